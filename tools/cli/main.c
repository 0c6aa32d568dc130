/*
 * main.c - `medembed` entry point: dispatches to a command.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"embed", cmd_embed, "embed texts (text lines or JSONL) to JSONL or .npy"},
    {"tokenize", cmd_tokenize, "print token ids and tokens, exactly as Hugging Face does"},
    {"info", cmd_info, "describe a model folder as JSON"},
    {"index", cmd_index, "build, extend, prune or describe a search index (SQLite file)"},
    {"search", cmd_search, "query an index: JSONL hits with id, score, chunk span, rank"},
    {"rerank", cmd_rerank, "score candidate texts against a query with a cross-encoder"},
    {"eval", cmd_eval, "score retrieval on a BEIR folder (nDCG@10, MAP, MRR, recall, P)"},
    {"serve", cmd_serve, "HTTP server: OpenAI /v1/embeddings + TEI /embed, dynamic batching"},
    {"pull", cmd_pull, "download a model from the Hugging Face hub into the cache"},
    {"bench", cmd_bench, "throughput/latency on fixed shapes or a corpus (text or --json)"},
};

static void usage(FILE *f)
{
    fprintf(f, "medembed %s - MedEmbed / BERT sentence embeddings in C\n\n", medembed_version());
    fprintf(f, "usage: medembed COMMAND [options]   (medembed COMMAND --help for details)\n\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nEnvironment: MEDEMBED_ISA=scalar|avx2|avx512|amx|neon forces a kernel level\n"
               "(amx-emu: the AMX kernels on emulated tiles, slow, for tests);\n"
               "MEDEMBED_CPU_DISABLE=avx512_bf16,avx512_vnni,amx (ARM64: i8mm,bf16,dotprod,\n"
               "neon) hides those CPU features (their fallback kernels run instead);\n"
               "MEDEMBED_PACK_CACHE=DIR keeps each model's\n"
               "packed weights in a file in DIR that later loads map instead of packing again\n"
               "(faster loads, one shared copy; a new file replaces the same model's stale\n"
               "ones; `medembed info --dtype D` shows its status).\n");
    fprintf(f, "-m takes a folder or a hub repo id (pulled into $MEDEMBED_HOME, default\n"
               "$XDG_CACHE_HOME/medembed or ~/.cache/medembed); without -m the model is\n"
               "abhinand/MedEmbed-base-v0.1.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("medembed %s (kernels: %s)\n", medembed_version(), medembed_isa());
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return COMMANDS[i].fn(argc - 1, argv + 1);
    cli_error("unknown command \"%s\" (run medembed --help)", argv[1]);
    return 2;
}
