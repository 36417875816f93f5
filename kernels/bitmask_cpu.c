/* In-place token bitmask application on CPU: the native counterpart of bitmask.py's kernels.
 *
 * Same contract as apply_token_bitmask_: bit t % 32 of word t / 32 set means token t is allowed;
 * a masked logit becomes -inf; ids past 32 * n_words (a padded vocabulary) are masked; extra bits
 * past the logits' width are ignored. Logits are handled as bit patterns (the caller passes the
 * -inf pattern of its dtype), so one loop serves float32, and one serves float16 and bfloat16.
 *
 * An allowed logit is written back unchanged: an and/or blend on its bits, not a branch, so the
 * loop vectorizes and costs the same on any mask (special cases for all-zero and all-one words
 * measured no faster once memory-bound, and slower on mixed masks); NaN payloads are never altered.
 *
 * Built on first use by native.py (cc -O3); called through ctypes, which releases the GIL.
 */

#include <stdint.h>

/* Per-lane bits from a table rather than a shift by the lane: with a shift the compiler needs
 * per-lane variable shifts (AVX2) to vectorize, and without them turns the select into a branch. */
static const uint32_t LANE_BIT[32] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
    1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
    1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
    1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};

/* The baseline x86-64 build has only 16-byte vectors: with GCC 12+ on glibc (ifunc), also build
 * AVX2 and AVX-512 versions of each entry point and let the loader pick the one this CPU runs.
 * common/native_build.py retries with OCTOGRAM_PORTABLE defined if a compiler refuses the clones. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 12 && !defined(OCTOGRAM_PORTABLE)
#define PER_CPU __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PER_CPU
#endif

#define DEFINE_APPLY(NAME, T)                                                                   \
    PER_CPU void NAME(T *logits, int64_t row_stride, int64_t n_cols, const uint32_t *mask,    \
                      int64_t n_words, const int64_t *rows, int64_t n_rows, T neg_inf)         \
    {                                                                                           \
        int64_t covered = n_cols < 32 * n_words ? n_cols : 32 * n_words;                      \
        int64_t full_words = covered / 32;                                                     \
        for (int64_t r = 0; r < n_rows; r++) {                                                 \
            T *restrict x = logits + (rows ? rows[r] : r) * row_stride;                        \
            const uint32_t *m = mask + r * n_words;                                            \
            for (int64_t w = 0; w < full_words; w++) {                                         \
                uint32_t bits = m[w];                                                          \
                T *restrict p = x + 32 * w;                                                    \
                for (int j = 0; j < 32; j++) {                                                 \
                    T keep = (T)((uint32_t)0 - (uint32_t)((bits & LANE_BIT[j]) != 0));         \
                    p[j] = (T)((p[j] & keep) | (neg_inf & (T)~keep));                          \
                }                                                                              \
            }                                                                                  \
            for (int64_t t = 32 * full_words; t < covered; t++)                                \
                if (!((m[t / 32] >> (t % 32)) & 1u))                                           \
                    x[t] = neg_inf;                                                            \
            for (int64_t t = covered; t < n_cols; t++)                                         \
                x[t] = neg_inf;                                                                \
        }                                                                                      \
    }

DEFINE_APPLY(octogram_apply_bitmask_32, uint32_t)
DEFINE_APPLY(octogram_apply_bitmask_16, uint16_t)
