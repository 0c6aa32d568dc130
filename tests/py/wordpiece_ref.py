"""wordpiece_ref.py - a small BERT WordPiece tokenizer for ASCII text, used as a test oracle.

It follows Hugging Face `tokenizers` for the ASCII subset only (the C engine's full Unicode
tokenizer is checked against the golden ids from the Rust library instead):

  BertNormalizer(clean_text, lowercase)  drop NUL and control characters other than \\t \\n \\r,
                                         map whitespace to ' ', lowercase (accents: none in ASCII)
  BertPreTokenizer                       split on whitespace, every punctuation char on its own
  WordPiece                              greedy longest match, '##' continuations, a word over
                                         100 chars or with an unmatched rest becomes [UNK]
  TemplateProcessing                     [CLS] ... [SEP]

U+FFFD is also dropped (clean_text does so), so text decoded with errors="replace" works.
"""

import re

ASCII_PUNCT = set(chr(c) for c in range(33, 48)) | set(chr(c) for c in range(58, 65)) \
    | set(chr(c) for c in range(91, 97)) | set(chr(c) for c in range(123, 127))


class NotAscii(ValueError):
    pass


def _clean(text):
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\ufffd" or o == 0:
            continue
        if ch in "\t\n\r":
            out.append(" ")
        elif o < 32 or o == 127:
            continue  # Cc control characters are removed (incl. \x0b \x0c)
        elif o > 127:
            raise NotAscii("non-ASCII character %r" % ch)
        else:
            out.append(ch)
    return "".join(out)


SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def pieces(text, vocab, lowercase=True, max_chars=100):
    """WordPiece tokens (strings) of an ASCII text, without [CLS]/[SEP].

    Special tokens written in the text ("[SEP]", case-sensitive) are matched in the raw text
    first, as HF does for added tokens with normalized=false.
    """
    ids = vocab if isinstance(vocab, dict) else {t: i for i, t in enumerate(vocab)}
    out = []
    pat = "(" + "|".join(re.escape(s) for s in SPECIALS if s in ids) + ")"
    for i, seg in enumerate(re.split(pat, text)):
        if i % 2:
            out.append(seg)
        else:
            out.extend(_pieces_plain(seg, ids, lowercase, max_chars))
    return out


def _pieces_plain(text, ids, lowercase, max_chars):
    text = _clean(text)
    if lowercase:
        text = text.lower()
    words = []
    for chunk in text.split(" "):
        cur = ""
        for ch in chunk:
            if ch in ASCII_PUNCT:
                if cur:
                    words.append(cur)
                    cur = ""
                words.append(ch)
            else:
                cur += ch
        if cur:
            words.append(cur)
    out = []
    for word in words:
        if len(word) > max_chars:
            out.append("[UNK]")
            continue
        start, sub = 0, []
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                cand = word[start:end] if start == 0 else "##" + word[start:end]
                if cand in ids:
                    found = cand
                    break
                end -= 1
            if found is None:
                sub = ["[UNK]"]
                break
            sub.append(found)
            start = end
        out.extend(sub)
    return out


def encode(text, vocab, lowercase=True, max_length=None, st_lower=False):
    """[CLS] + pieces + [SEP] as ids; max_length truncates like HF (keeps [SEP]).

    st_lower applies Python str.lower() first, as sentence-transformers does when
    sentence_bert_config.json says do_lower_case: then "[SEP]" in the text becomes "[sep]"
    and is no longer a special token.
    """
    ids = vocab if isinstance(vocab, dict) else {t: i for i, t in enumerate(vocab)}
    if st_lower:
        text = text.lower()
    body = [ids[p] for p in pieces(text, ids, lowercase)]
    if max_length is not None:
        body = body[:max(0, max_length - 2)]
    return [ids["[CLS]"]] + body + [ids["[SEP]"]]
