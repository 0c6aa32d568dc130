/*
 * packcache.h - packed weights kept in a file between processes.
 *
 * Packing (me_kern.pack) turns each linear layer's fp32 weights into the
 * kernels' layout at every load, into fresh memory; when a VM's host has
 * taken freed memory back, each fresh page faults in the host, and that can
 * cost more than the packing (docs/PERFORMANCE.md, "Pack cache"). With a
 * pack cache directory (medembed_load_opts.pack_cache or MEDEMBED_PACK_CACHE)
 * the first load writes the packed layers to one file there, and later loads
 * map that file read-only from the page cache instead of packing: no fresh
 * memory, and processes that load the same model share one copy.
 *
 * A cache file is used only when everything that decides its bytes matches
 * (format version, medembed version, kernel level and the CPU features that
 * choose a layout, compute dtype, a hash of a probe layer packed by this
 * build's packers, each layer's shape, the model identity's inputs but the
 * tensor data (model/identity.h: config, tokenizer and sentence-
 * transformers settings, safetensors headers), and each weight file's
 * device, inode, size, modification and change times, which stand for the
 * data so that a hit never reads the weights), its table of layers is
 * consistent, and the checksum over all of its data matches. Each layer's
 * first ME_PACK_HDR bytes (the level's header) are zeros in the file; adopt
 * rebuilds the header. Otherwise the model is packed as without a cache and
 * the file is rewritten; the model's info JSON says which ("pack_cache").
 *
 * Files are named DIR/FOLDER-KEY-LEVEL-DTYPE.mepack (FOLDER: 16 hex digits
 * of the SHA-256 of the model folder's canonical path; KEY: 32 of the key;
 * LEVEL: the kernel level and "+bf16" / "+vnni" for those CPU features,
 * e.g. avx512+bf16+vnni). They are only ever replaced (a temporary file
 * renamed into place), never changed where they are, so a process keeps a
 * consistent mapping while another rewrites the file. Writing a file
 * removes the regular files it makes stale: the same folder's files for the
 * same LEVEL and DTYPE under another key (changed weights, another medembed
 * version), and the same folder's temporary files (NAME.tmp.XXXXXX) older
 * than an hour (a killed writer's); nothing else in DIR is touched (other
 * folders, levels, CPUs or dtypes, symbolic links, other names). A process
 * that maps a removed file keeps its mapping. Two medembed versions that
 * share one DIR therefore replace each other's file of a model at every
 * load; give them separate directories. Do not edit or
 * truncate a file that a running process has mapped (as with any mapped
 * file, its readers would fault).
 *
 * File layout (little-endian; PC_ALIGN = 4096):
 *   0   magic "MEPACK01"          8 bytes
 *   8   n_blobs                   u32 (4 per encoder layer)
 *   12  reserved                  u32, 0
 *   16  key                       32 bytes (SHA-256, see pc_key)
 *   48  file_bytes                u64
 *   56  checksum                  u64 over [data_start, file_bytes)
 *   64  data_start                u64
 *   72  n_blobs x (offset u64, bytes u64)
 *   ... zeros up to data_start (a multiple of PC_ALIGN); then each blob at its
 *   offset (a multiple of PC_ALIGN, in order, each right after the previous
 *   one rounded up), zeros up to the next; file_bytes is the last blob's end
 *   rounded up.
 */
#ifndef ME_PACKCACHE_H
#define ME_PACKCACHE_H

#include <stddef.h>
#include <stdint.h>

#define ME_PC_ALIGN 4096u

typedef struct medembed_model medembed_model;

typedef struct me_pc_blob {
    uint64_t offset, bytes;
} me_pc_blob;

/* Checks a cache file image (buf, len) against the key and blob count it
 * must have: header, table and checksum. Fills blobs[0..n_blobs) on
 * success and returns 0; otherwise -1 with the reason in why. Reads only
 * buf[0..len). */
int me_pc_parse(const uint8_t *buf, size_t len, const uint8_t key[32], uint32_t n_blobs,
                me_pc_blob *blobs, char *why, size_t why_len);

/* Loads m's packed layers from the cache in dir (m's weights loaded, not yet
 * packed): 1 if every layer was adopted from a mapped file (kept in m until
 * medembed_model_free), 0 if not (m is unchanged but for its pack cache
 * status). Never fails the load. */
int me_pc_load(medembed_model *m, const char *dir);

/* After packing, and after me_pc_load (whose key and path it reuses): writes
 * m's packed layers to the cache in dir (atomically: a temporary file
 * renamed into place), or records why not in m's status. */
void me_pc_save(medembed_model *m, const char *dir);

/* Unmaps m's cache file (after its layers were unpacked). */
void me_pc_close(medembed_model *m);

#endif
