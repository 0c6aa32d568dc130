#!/usr/bin/env bash
# CLI behaviour tests that need no Python: usage errors, exit codes and
# one-line messages that name the problem. Embedding correctness against the
# NumPy reference lives in tests/py/test_cli.py.
#
# Every check counts once, as passed or failed, through expect or check; the
# script exits non-zero when any failed. The model-backed checks run on the
# generated model BUILD/golden/cls-f32 (make golden-gen) and on ../shared's
# golden tiny-cls-f32; each is skipped visibly when absent.
set -u
build=${1:-build}
bin="$build/medembed"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# expect NAME WANT_RC NEEDLE -- CMD...: runs CMD, checks the exit code and
# that stderr contains NEEDLE (empty NEEDLE: no check). Stdout goes to $tmp/out.
expect() {
    local name=$1 want=$2 needle=$3; shift 4
    local err rc
    err=$("$@" 2>&1 >"$tmp/out"); rc=$?
    if [ "$rc" -ne "$want" ] || { [ -n "$needle" ] && ! grep -qF -- "$needle" <<<"$err"; }; then
        echo "FAIL $name: rc=$rc (want $want), stderr: $err"; fail=$((fail + 1))
    else
        pass=$((pass + 1))
    fi
}

# check NAME CMD...: one check that passes when CMD exits 0.
check() {
    local name=$1; shift
    if "$@"; then
        pass=$((pass + 1))
    else
        echo "FAIL $name"; fail=$((fail + 1))
    fi
}

expect "no command" 2 "usage" -- "$bin"
expect "unknown command" 2 'unknown command "frobnicate"' -- "$bin" frobnicate
expect "help" 0 "" -- "$bin" --help
check "help lists embed" grep -q "embed" "$tmp/out"
expect "embed help" 0 "" -- "$bin" embed --help
check "embed --help lists --max-length" grep -q -- "--max-length" "$tmp/out"
expect "missing model dir" 1 "/nonexistent/model" -- "$bin" info -m /nonexistent/model
expect "bad flag value" 2 "--batch-size expects an integer" -- "$bin" embed -m x --batch-size 0
expect "bad threads" 2 "--threads" -- "$bin" embed -m x --threads abc
expect "bad format" 2 "--format expects jsonl or npy" -- "$bin" embed -m x --format csv
expect "bad dtype" 2 "--dtype expects" -- "$bin" embed -m x --dtype f64
expect "unknown option" 2 "unknown option" -- "$bin" embed -m x --frob
expect "missing value" 2 "needs a value" -- "$bin" embed -m
expect "resume to stdout" 2 "--resume needs a JSONL output file" -- "$bin" embed -m x --resume
expect "resume single npy" 2 "--resume needs a JSONL output file" -- "$bin" embed -m x --format npy -o "$tmp/x.npy" --resume
expect "shard-size 0" 2 "--shard-size expects an integer" -- "$bin" embed -m x --shard-size 0
expect "shard-size jsonl" 2 "--shard-size needs .npy output" -- "$bin" embed -m x --shard-size 10 -o "$tmp/x.jsonl"
expect "tokenize resume" 2 "--resume needs" -- "$bin" tokenize -m x --resume -o "$tmp/t.jsonl"
for cmd in embed "index build" eval bench; do
    expect "${cmd%% *}: --progress/--quiet parse" 0 "" -- "$bin" $cmd --progress --quiet --help
done
check "embed --help lists --resume and --shard-size" bash -c '"$0" embed --help | grep -q -- "--shard-size" && "$0" embed --help | grep -q -- "--resume"' "$bin"

# The options commands share have one rule each (tools/cli/util.c): the same
# range, words and message in every command that takes them, and the same
# usage-error tail. The model is never loaded: these fail, or pass, parsing.
for cmd in embed tokenize "index build" search eval bench serve rerank; do
    name=${cmd%% *}
    expect "$name: threads 0" 2 '--threads expects an integer in [1, 256], got "0"' -- "$bin" $cmd -m x --threads 0
    expect "$name: threads 257" 2 '--threads expects an integer in [1, 256], got "257"' -- "$bin" $cmd -m x --threads 257
    expect "$name: bad dtype" 2 '--dtype expects f32, bf16 or int8, got "f64"' -- "$bin" $cmd -m x --dtype f64
    expect "$name: missing value" 2 "option --threads needs a value" -- "$bin" $cmd -m x --threads
    expect "$name: unknown option" 2 "unknown option \"--frob\" (see medembed $name --help)" -- "$bin" $cmd -m x --frob
    expect "$name: unexpected argument" 2 'unexpected argument "extra"' -- "$bin" $cmd -m x extra
done
for cmd in embed "index build" eval; do
    expect "${cmd%% *}: batch-size 0" 2 '--batch-size expects an integer in [1, 1048576], got "0"' -- "$bin" $cmd -m x --batch-size 0
done
for cmd in "index build" eval; do
    expect "${cmd%% *}: bad quantize" 2 '--quantize expects int8 or none, got "f16"' -- "$bin" $cmd -m x --quantize f16
    expect "${cmd%% *}: hnsw-m 1" 2 '--hnsw-m expects an integer in [2, 128], got "1"' -- "$bin" $cmd -m x --hnsw-m 1
done
for cmd in search eval; do
    expect "$cmd: k 0" 2 '-k expects an integer in [1, 10000], got "0"' -- "$bin" $cmd -m x -k 0
done
# Accepted alike: --quantize none|f32|int8 and --batch-size up to 2^20 get past
# parsing (to the missing input) in both index and eval.
for q in none f32 int8; do
    expect "index: quantize $q" 1 "$tmp/none.npy" -- "$bin" index build --vectors "$tmp/none.npy" -o "$tmp/q.db" --quantize $q
    expect "eval: quantize $q" 1 "missing corpus file" -- "$bin" eval -m x --beir "$tmp/nobeir" --quantize $q
done
expect "index: batch-size 2^20" 1 "$tmp/none.npy" -- "$bin" index build --vectors "$tmp/none.npy" -o "$tmp/q.db" --batch-size 1048576
expect "eval: batch-size 2^20" 1 "missing corpus file" -- "$bin" eval -m x --beir "$tmp/nobeir" --batch-size 1048576

mkdir -p "$tmp/empty"
expect "folder without config" 1 "config.json" -- "$bin" info -m "$tmp/empty"
echo '{"model_type": "bert",' > "$tmp/empty/config.json"
expect "malformed config" 1 "invalid JSON" -- "$bin" info -m "$tmp/empty"
echo '{"model_type": "t5"}' > "$tmp/empty/config.json"
expect "unsupported architecture" 1 'model_type "t5" is not supported' -- "$bin" info -m "$tmp/empty"

# The example program's line: dim 64, two token counts, a cosine in [-1, 1].
example_line_ok() {
    grep -Eq 'dim 64, tokens [0-9]+ and [0-9]+, cosine -?[01]\.[0-9]{4}$' "$tmp/out" && return 0
    echo "example output: $(cat "$tmp/out")"; return 1
}

# --text and stdin give the same, non-empty record for the same text (two
# failed runs with empty outputs must not compare equal).
text_matches_stdin() {
    "$bin" embed -m "$1" --text "chest pain" > "$tmp/a.jsonl" || return 1
    echo "chest pain" | "$bin" embed -m "$1" > "$tmp/b.jsonl" || return 1
    grep -q '"embedding": \[' "$tmp/a.jsonl" && cmp -s "$tmp/a.jsonl" "$tmp/b.jsonl"
}

# Checks that need a model folder: a CLS model with hidden size 64 and a
# 512-token limit.
model_checks() {
    local model=$1 tag=$2
    expect "$tag: unreadable input" 1 "/nonexistent/in.txt" -- "$bin" embed -m "$model" -i /nonexistent/in.txt
    expect "$tag: input is a directory" 1 "is a directory" -- "$bin" embed -m "$model" -i "$tmp"
    printf '{"text": "ok"}\n{"text": 5}\n' > "$tmp/bad.jsonl"
    expect "$tag: jsonl without text" 1 'line 2: no string field "text"' -- "$bin" embed -m "$model" -i "$tmp/bad.jsonl"
    printf '{"text": "a"}\n{oops\n' > "$tmp/bad2.jsonl"
    expect "$tag: malformed jsonl" 1 "line 2: invalid JSON" -- "$bin" embed -m "$model" -i "$tmp/bad2.jsonl"
    printf 'good\nbad \xff\xfe here\n' > "$tmp/utf8.txt"
    expect "$tag: invalid utf8 warns" 0 "1 input line(s) had invalid UTF-8" -- "$bin" embed -m "$model" -i "$tmp/utf8.txt"
    check "$tag: invalid utf8 keeps both lines" [ "$(wc -l < "$tmp/out")" -eq 2 ]
    expect "$tag: strict utf8" 1 "line 2: invalid UTF-8" -- "$bin" embed -m "$model" -i "$tmp/utf8.txt" --strict
    local long
    long=$(printf 'word %.0s' $(seq 1 600))
    echo "$long" > "$tmp/long.txt"
    expect "$tag: no-truncate" 1 "over the model's limit" -- "$bin" embed -m "$model" -i "$tmp/long.txt" --no-truncate
    expect "$tag: truncation warns" 0 "truncated to 512 tokens" -- "$bin" embed -m "$model" -i "$tmp/long.txt"
    check "$tag: truncated record" grep -q '"n_tokens": 512, "truncated": true' "$tmp/out"
    expect "$tag: unknown prompt name" 2 'prompt_name "query" is not among' -- "$bin" embed -m "$model" --prompt-name query
    expect "$tag: output dir unwritable" 1 "cannot open output" -- "$bin" embed -m "$model" -i "$tmp/long.txt" -o /nonexistent/dir/out.jsonl
    # Corrupted weights: a truncated copy names the file.
    rm -rf "$tmp/trunc"; mkdir -p "$tmp/trunc"
    cp "$model"/*.json "$model"/vocab.txt "$tmp/trunc/"; cp -r "$model/1_Pooling" "$tmp/trunc/"
    head -c 100000 "$model/model.safetensors" > "$tmp/trunc/model.safetensors"
    expect "$tag: truncated safetensors" 1 "model.safetensors" -- "$bin" info -m "$tmp/trunc"
    rm "$tmp/trunc/model.safetensors"
    expect "$tag: missing safetensors" 1 "model.safetensors not found" -- "$bin" info -m "$tmp/trunc"
    # The example program embeds two sentences and prints a cosine in [-1, 1].
    expect "$tag: example program" 0 "" -- "$build/examples/embed" "$model"
    check "$tag: example output" example_line_ok
    check "$tag: --text vs stdin" text_matches_stdin "$model"
    expect "$tag: text and input" 2 "not both" -- "$bin" embed -m "$model" --text a -i "$tmp/a.jsonl"
}

gen="$build/golden/cls-f32"
if [ -f "$build/golden/.complete" ]; then
    model_checks "$gen" gen
else
    echo "SKIP: generated golden set absent ($build/golden; make golden-gen needs numpy): model-backed CLI tests on gen/cls-f32"
fi
shared=${MEDEMBED_SHARED:-../shared}
model="$shared/golden/embeddings/tiny-cls-f32"
if [ -d "$model" ]; then
    model_checks "$model" shared
else
    echo "SKIP: $model not found (../shared is absent): model-backed CLI tests on shared/tiny-cls-f32"
fi
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
