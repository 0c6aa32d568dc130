/*
 * embed.c - the smallest complete medembed program: load a model, embed two
 * sentences, print their cosine similarity.
 *
 *   make && cc -Iinclude examples/embed.c -Lbuild -lmedembed -Wl,-rpath,build -o embed
 *   ./embed path/to/MedEmbed-base-v0.1      # a folder
 *   ./embed abhinand/MedEmbed-base-v0.1     # or a repo id already downloaded
 */
#include <stdio.h>
#include <stdlib.h>

#include "medembed.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR|ORG/NAME[@REV]\n", argv[0]);
        return 2;
    }

    /* 1. Load the model. It is immutable afterwards and can be shared by
     *    any number of threads. Errors come back as a status code plus a
     *    one-line message that names the file or tensor at fault. */
    char err[512];
    medembed_model *model = NULL;
    int rc = medembed_model_load(argv[1], NULL, &model, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        fprintf(stderr, "load failed (%s): %s\n", medembed_status_str(rc), err);
        return 1;
    }

    /* 2. A context holds scratch memory and worker threads (0 = one per
     *    CPU). Use one context per calling thread. */
    medembed_ctx *ctx = NULL;
    if (medembed_ctx_create(model, 0, &ctx) != MEDEMBED_OK) {
        medembed_model_free(model);
        return 1;
    }

    /* 3. Embed. Output rows are medembed_model_dim() floats each, pooled
     *    and normalised as the model's sentence-transformers config says
     *    (MedEmbed: the [CLS] vector, L2-normalised). */
    const char *texts[2] = {
        "Aspirin reduces the risk of recurrent ischemic stroke.",
        "Antiplatelet therapy for secondary stroke prevention.",
    };
    int32_t dim = medembed_model_dim(model);
    float *vecs = malloc(sizeof *vecs * 2 * (size_t)dim);
    medembed_text_info info[2];
    rc = vecs ? medembed_ctx_embed(ctx, texts, NULL, 2, NULL, vecs, info) : MEDEMBED_ERR_NOMEM;
    if (rc != MEDEMBED_OK) {
        fprintf(stderr, "embed failed: %s\n", medembed_ctx_last_error(ctx));
    } else {
        /* Normalised vectors: the dot product is the cosine similarity. */
        double dot = 0;
        for (int32_t i = 0; i < dim; i++)
            dot += (double)vecs[i] * vecs[dim + i];
        printf("dim %d, tokens %d and %d, cosine %.4f\n", dim, info[0].n_tokens,
               info[1].n_tokens, dot);
    }

    /* 4. Free in reverse order; both functions accept NULL. */
    free(vecs);
    medembed_ctx_free(ctx);
    medembed_model_free(model);
    return rc == MEDEMBED_OK ? 0 : 1;
}
