/* Fused polyphase snake activation (float32, time-major), for hierspeech2.nn.fused_snake.
 *
 * The same arithmetic as PolyphaseActivation1d's depthwise-convolution path, in one pass over
 * cache-sized blocks of output time: each phase of the x2-upsampled signal (the snake's alpha
 * folded into its taps), the snake written as sin^2(v) + gain * v, and the decimating low-pass
 * (1/beta folded into its taps), with no tensor between the steps. Channels are the innermost,
 * contiguous axis: every loop below runs across channels in SIMD registers (GCC/Clang vector
 * types), with a filter's taps for a register of channels held in registers along time.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8
#define MAX_TAPS 64
/* Channels per pass: one pass's taps and input rows stay in L1. */
#define GROUP 64
typedef float floats __attribute__((vector_size(LANES * sizeof(float))));

static inline floats load(const float *p)
{
    floats v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, floats v) { memcpy(p, &v, sizeof v); }

#ifdef __FMA__
#define MADD(a, b, c) fmaf(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* sin(v)^2, which has period pi: v is reduced to r = v - k pi in [-pi/2, pi/2] (pi in three
 * parts, Cody and Waite), then sin(r) is its Taylor polynomial to r^11 (truncation error below
 * 6e-8 there). Inlined, it vectorises to a dozen multiply-adds per register of values. */
#pragma omp declare simd
static inline float sine_squared(float v)
{
    const float k = rintf(v * 0.318309886183790671538f);
    float r = MADD(-k, 3.140625f, v);
    r = MADD(-k, 9.67502593994140625e-4f, r);
    r = MADD(-k, 1.50995798975372962e-7f, r);
    const float r2 = r * r;
    float p = -2.50521083854417187751e-8f;
    p = MADD(p, r2, 2.75573192239858906526e-6f);
    p = MADD(p, r2, -1.98412698412698412698e-4f);
    p = MADD(p, r2, 8.33333333333333333333e-3f);
    p = MADD(p, r2, -1.66666666666666666667e-1f);
    const float s = MADD(r * r2, p, r);
    return s * s;
}

/* Output samples per block: each phase's activated values ((block + down_taps - 1) x channels
 * floats) take about 64 KiB, 128 KiB for both phases at ratio 2, inside L2. */
static long block_length(long channels)
{
    long block = 16384 / (channels > 0 ? channels : 1);
    return block < 16 ? 16 : block;
}

static long clamp(long t, long length) { return t < 0 ? 0 : (t >= length ? length - 1 : t); }

/* Phase `phase` at `position` (pre-activation) for `width` channels, any position: input times
 * outside [0, length) repeat the edge sample. */
static inline __attribute__((always_inline)) void
phase_at(const float *restrict xb, long length, long C, long width, long x_time, int up_taps, int up_min,
         const float *restrict taps, long position, float *restrict destination)
{
    const float *rows[MAX_TAPS];
    for (int k = 0; k < up_taps; ++k)
        rows[k] = xb + clamp(position + up_min + k, length) * x_time;
    for (long c = 0; c < width; ++c) {
        float acc = 0.0f;
        for (int k = 0; k < up_taps; ++k)
            acc = MADD(taps[(long)k * C + c], rows[k][c], acc);
        destination[c] = acc;
    }
}

static inline __attribute__((always_inline)) void
run(const float *restrict x, long batch, long length, long C, long width, long x_batch, long x_time,
    int ratio, int up_taps, int up_min, const float *restrict up, int down_taps, int down_min,
    const float *restrict down, const float *restrict gain, float *restrict out, long first, long last,
    long block, float *restrict scratch)
{
    const long span = block + down_taps - 1;
    const long vector_width = width / LANES * LANES;
    /* Phase positions whose up taps all read inside [0, length): no edge handling there. */
    const long inner_low = -up_min > 0 ? -up_min : 0;
    const long inner_high = length - up_min - up_taps + 1;
    floats taps[MAX_TAPS];
    for (long b = 0; b < batch; ++b) {
        const float *xb = x + b * x_batch;
        float *ob = out + b * length * C;
        for (long n0 = first; n0 < last; n0 += block) {
            const long n1 = n0 + block < last ? n0 + block : last;
            const long m0 = n0 + down_min, m1 = n1 + down_min + down_taps - 1;
            const long low = m0 > inner_low ? m0 : inner_low;
            const long high = m1 < inner_high ? m1 : inner_high;
            for (int p = 0; p < ratio; ++p) {
                float *phase = scratch + (long)p * span * width;
                const float *phase_taps = up + (long)p * up_taps * C;
                for (long m = m0; m < m1; ++m) {
                    if (m >= low && m < high)
                        continue;
                    /* The reference low-pass replicate-pads the upsampled signal: before the
                     * start, phase 0 at 0; past the end, the last phase at length - 1. */
                    if (m < 0)
                        phase_at(xb, length, C, width, x_time, up_taps, up_min, up, 0, phase + (m - m0) * width);
                    else if (m >= length)
                        phase_at(xb, length, C, width, x_time, up_taps, up_min,
                                 up + (long)(ratio - 1) * up_taps * C, length - 1, phase + (m - m0) * width);
                    else
                        phase_at(xb, length, C, width, x_time, up_taps, up_min, phase_taps, m,
                                 phase + (m - m0) * width);
                }
                for (long c = 0; c < vector_width; c += LANES) {
                    for (int k = 0; k < up_taps; ++k)
                        taps[k] = load(phase_taps + (long)k * C + c);
                    for (long m = low; m < high; ++m) {
                        const float *row = xb + (m + up_min) * x_time + c;
                        floats acc = taps[0] * load(row);
                        for (int k = 1; k < up_taps; ++k)
                            acc += taps[k] * load(row + k * x_time);
                        store(phase + (m - m0) * width + c, acc);
                    }
                }
                for (long m = low; m < high; ++m)
                    for (long c = vector_width; c < width; ++c) {
                        const float *row = xb + (m + up_min) * x_time + c;
                        float acc = 0.0f;
                        for (int k = 0; k < up_taps; ++k)
                            acc = MADD(phase_taps[(long)k * C + c], row[k * x_time], acc);
                        phase[(m - m0) * width + c] = acc;
                    }
                for (long m = 0; m < m1 - m0; ++m) {
                    float *values = phase + m * width;
#pragma omp simd
                    for (long c = 0; c < width; ++c)
                        values[c] = MADD(gain[c], values[c], sine_squared(values[c]));
                }
            }
            for (long c = 0; c < vector_width; c += LANES) {
                for (int p = 0; p < ratio; ++p)
                    for (int k = 0; k < down_taps; ++k)
                        taps[p * down_taps + k] = load(down + ((long)p * down_taps + k) * C + c);
                for (long n = n0; n < n1; ++n) {
                    floats acc = {0};
                    for (int p = 0; p < ratio; ++p) {
                        const float *activated = scratch + ((long)p * span + (n - n0)) * width + c;
                        for (int k = 0; k < down_taps; ++k)
                            acc += taps[p * down_taps + k] * load(activated + (long)k * width);
                    }
                    store(ob + n * C + c, acc);
                }
            }
            for (long n = n0; n < n1; ++n)
                for (long c = vector_width; c < width; ++c) {
                    float acc = 0.0f;
                    for (int p = 0; p < ratio; ++p)
                        for (int k = 0; k < down_taps; ++k)
                            acc = MADD(down[((long)p * down_taps + k) * C + c],
                                       scratch[((long)p * span + (n - n0) + k) * width + c], acc);
                    ob[n * C + c] = acc;
                }
        }
    }
}

/* x: [batch, length, channels] with strides (x_batch, x_time, 1); out: [batch, length, channels]
 * contiguous, of which rows [first, last) are written.
 * up: [ratio][up_taps][channels]: upsampled phase p at position m = sum_k up[p][k] x[m + up_min + k]
 * (x replicate-padded). Phase positions before 0 hold phase 0 at 0, those at or after `length`
 * hold the last phase at length - 1 (the reference low-pass replicate-pads the upsampled signal).
 * down: [ratio][down_taps][channels]: out[n] = sum_p sum_k down[p][k] act(phase p at n + down_min + k).
 * Returns 0, or -1 for taps it does not take or when the scratch block cannot be allocated. */
int polyphase_snake_f32(const float *restrict x, long batch, long length, long channels, long x_batch,
                        long x_time, int ratio, int up_taps, int up_min, const float *restrict up,
                        int down_taps, int down_min, const float *restrict down,
                        const float *restrict gain, float *restrict out, long first, long last)
{
    if (ratio < 1 || up_taps < 1 || down_taps < 1 || up_taps > MAX_TAPS || ratio * down_taps > MAX_TAPS)
        return -1;
    const long group = channels < GROUP ? channels : GROUP;
    const long block = block_length(group);
    float *scratch = malloc(sizeof(float) * (size_t)(ratio * (block + down_taps - 1) * group));
    if (scratch == NULL)
        return -1;
    for (long c = 0; c < channels; c += group) {
        const long width = channels - c < group ? channels - c : group;
        /* BigVGAN's 12-tap filters at ratio 2 (7 offsets per phase): a copy with constant trip
         * counts, whose tap loops the compiler unrolls. */
        if (ratio == 2 && up_taps == 7 && down_taps == 7)
            run(x + c, batch, length, channels, width, x_batch, x_time, 2, 7, up_min, up + c, 7, down_min,
                down + c, gain + c, out + c, first, last, block, scratch);
        else
            run(x + c, batch, length, channels, width, x_batch, x_time, ratio, up_taps, up_min, up + c,
                down_taps, down_min, down + c, gain + c, out + c, first, last, block, scratch);
    }
    free(scratch);
    return 0;
}
