/*
 * optim.c - SGD and Adam/AdamW parameter updates, float and double, one
 * pass over each parameter: read grad (never written), read and write the
 * parameter and the optimizer state. A call updates a list of parameters
 * (an optimizer's group); the single-parameter kernels are lists of one.
 *
 * The arithmetic is torch.optim's single-tensor path as the NumPy reference
 * spells it out, operation for operation in the element type, with every
 * hyperparameter rounded to the element type the way NumPy rounds a Python
 * float it meets (once, from the double the caller computed). IEEE add,
 * multiply, divide and sqrt round the same in vector and scalar code and
 * nothing is contracted into an FMA, so the updates equal the reference's
 * bit for bit on every instruction set.
 *
 * Flags that stay fixed for a call (weight decay on, first step, Nesterov)
 * are tested inside the loops; GCC hoists them or turns them into selects,
 * and either way the loop stays vectorized.
 */
#include <math.h>

#include "kernel_common.h"

#define DEFINE_OPTIM_LOOPS(T, S, ISA, TARGET)                                            \
    /* d = grad (+ wd * param); with momentum, buf = d on the first step, else */        \
    /* buf = momentum * buf + (1 - dampening) * d, and the step is */                    \
    /* d + momentum * buf (Nesterov) or buf; param -= lr * step. */                      \
    static TARGET void sgd_##S##_##ISA(size_t n, T *restrict param, T *restrict buf,     \
                                       const T *restrict grad, T lr, T momentum,         \
                                       T dampened, T weight_decay, int decay,            \
                                       int nesterov, int first_step)                     \
    {                                                                                    \
        if (buf == NULL) {                                                               \
            for (size_t i = 0; i < n; i++) {                                             \
                T d = decay ? param[i] * weight_decay + grad[i] : grad[i];               \
                param[i] -= d * lr;                                                      \
            }                                                                            \
            return;                                                                      \
        }                                                                                \
        for (size_t i = 0; i < n; i++) {                                                 \
            T d = decay ? param[i] * weight_decay + grad[i] : grad[i];                   \
            T b = first_step ? d : buf[i] * momentum + dampened * d;                     \
            T step = nesterov ? b * momentum + d : b;                                    \
            buf[i] = b;                                                                  \
            param[i] -= step * lr;                                                       \
        }                                                                                \
    }                                                                                    \
    /* Adam: m = lerp(m, g, 1 - beta1) in PyTorch's two-sided form (`small` */           \
    /* says the weight is below 0.5), v = beta2 v + (1 - beta2) g^2, */                  \
    /* param -= step_size * m / (sqrt(v) / bc2_sqrt + eps). */                           \
    static TARGET void adam_##S##_##ISA(                                                 \
        size_t n, T *restrict param, T *restrict m, T *restrict v, const T *restrict grad, \
        T decay_factor, T weight_decay, int mode, T lerp_weight, int small, T beta2,     \
        T one_minus_beta2, T bc2_sqrt, T eps, T step_size)                               \
    {                                                                                    \
        for (size_t i = 0; i < n; i++) {                                                 \
            T p = param[i];                                                              \
            T g = grad[i];                                                               \
            if (mode == 1)                                                               \
                p *= decay_factor;                                                       \
            else if (mode == 2)                                                          \
                g = p * weight_decay + g;                                                \
            T diff = g - m[i];                                                           \
            T mi = small ? m[i] + diff * lerp_weight : g - diff * lerp_weight;           \
            T vi = v[i] * beta2 + g * g * one_minus_beta2;                               \
            T denom = (T)sqrt(vi) / bc2_sqrt + eps;                                      \
            m[i] = mi;                                                                   \
            v[i] = vi;                                                                   \
            param[i] = p - mi / denom * step_size;                                       \
        }                                                                                \
    }

MG_FOR_EACH_ISA(DEFINE_OPTIM_LOOPS, float, f32)
MG_FOR_EACH_ISA(DEFINE_OPTIM_LOOPS, double, f64)

static __typeof__(sgd_f32_generic) *const sgd_f32_loops[] = MG_ISA_TABLE(sgd_f32);
static __typeof__(sgd_f64_generic) *const sgd_f64_loops[] = MG_ISA_TABLE(sgd_f64);
static __typeof__(adam_f32_generic) *const adam_f32_loops[] = MG_ISA_TABLE(adam_f32);
static __typeof__(adam_f64_generic) *const adam_f64_loops[] = MG_ISA_TABLE(adam_f64);

/*
 * Below this many elements in all the call's tensors together an update runs
 * on the calling thread; -DMG_OPTIM_PARALLEL_MIN=... in MINIGRAD_CFLAGS
 * overrides it. It counts the elements of every tensor of the call, and an
 * update streams 5 to 7 arrays that the forward and backward passes have
 * pushed out of the cache: 2^18 elements take one thread over 100 us, and a
 * second thread makes it about 1.5x faster (measured on 2 cores, float32 Adam). In the
 * AdamW step of bench/bench_train.py (672K elements, batch 128) threads cut
 * the update from about 500 to 310 us, the median step by about 9%. The
 * risk MG_PARALLEL_MIN describes is real here too: with another process
 * keeping a core busy, some runs lost about 7 ms per update waiting for the
 * worker, when the whole step already took about 64 ms for the same reason.
 */
#ifndef MG_OPTIM_PARALLEL_MIN
#define MG_OPTIM_PARALLEL_MIN ((size_t)1 << 18)
#endif

static int optim_use_threads(size_t total)
{
    return total >= MG_OPTIM_PARALLEL_MIN && mg_threads_now() > 1;
}

static size_t total_length(size_t count, const size_t *lens)
{
    size_t total = 0;

    for (size_t b = 0; b < count; b++)
        total += lens[b];
    return total;
}

/* A thread's share of a list is a range [lo, hi) of the elements numbered
 * across the list; the tensor whose elements are [start, start + len) meets
 * it in the returned number of elements, from *offset into the tensor. */
static size_t overlap(size_t start, size_t len, size_t lo, size_t hi, size_t *offset)
{
    size_t first = start > lo ? start : lo;
    size_t end = start + len < hi ? start + len : hi;

    *offset = first - start;
    return first < end ? end - first : 0;
}

#define DEFINE_OPTIM_KERNELS(T, S)                                                       \
    /* What every tensor of an SGD call shares, rounded to T once. */                    \
    typedef struct {                                                                     \
        __typeof__(sgd_##S##_generic) *loop;                                             \
        T lr, momentum, dampened, weight_decay;                                          \
        int decay, nesterov;                                                             \
    } sgd_call_##S;                                                                      \
    /* Elements [off, off + len) of tensor b; len > 0. */                                \
    static void sgd_part_##S(const sgd_call_##S *c, size_t b, size_t off, size_t len,    \
                             T *const *params, T *const *bufs, const T *const *grads,    \
                             const int *first_steps)                                     \
    {                                                                                    \
        T *buf = bufs != NULL && bufs[b] != NULL ? bufs[b] + off : NULL;                 \
        int first = first_steps != NULL && first_steps[b];                               \
        c->loop(len, params[b] + off, buf, grads[b] + off, c->lr, c->momentum,           \
                c->dampened, c->weight_decay, c->decay, c->nesterov, first);             \
    }                                                                                    \
    int mg_sgd_step_multi_##S(size_t count, T *const *params, T *const *momentum_buffers, \
                              const T *const *grads, const size_t *lens,                 \
                              const int *first_steps, double lr, double momentum,        \
                              double dampening, double weight_decay, int nesterov)       \
    {                                                                                    \
        sgd_call_##S c = {sgd_##S##_loops[mg_simd_level()], (T)lr, (T)momentum,         \
                          (T)(1.0 - dampening), (T)weight_decay, weight_decay != 0.0,    \
                          nesterov};                                                     \
        T *const *bufs = momentum != 0.0 ? momentum_buffers : NULL;                      \
        size_t total = total_length(count, lens);                                        \
        if (!optim_use_threads(total)) {                                                 \
            for (size_t b = 0; b < count; b++) {                                         \
                if (lens[b] > 0)                                                         \
                    sgd_part_##S(&c, b, 0, lens[b], params, bufs, grads, first_steps);   \
            }                                                                            \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(total, 16);                                     \
            size_t start = 0, off, len;                                                  \
            for (size_t b = 0; b < count; start += lens[b], b++) {                       \
                len = overlap(start, lens[b], r.lo, r.lo + r.len, &off);                 \
                if (len > 0)                                                             \
                    sgd_part_##S(&c, b, off, len, params, bufs, grads, first_steps);     \
            }                                                                            \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_sgd_step_##S(size_t n, T *param, T *momentum_buffer, const T *grad,           \
                        double lr, double momentum, double dampening,                    \
                        double weight_decay, int nesterov, int first_step)               \
    {                                                                                    \
        return mg_sgd_step_multi_##S(1, &param, &momentum_buffer, &grad, &n, &first_step, \
                                     lr, momentum, dampening, weight_decay, nesterov);   \
    }                                                                                    \
    /* What every tensor of an Adam call shares, rounded to T once; the bias */          \
    /* corrections depend on each tensor's step and are formed per tensor. */            \
    typedef struct {                                                                     \
        __typeof__(adam_##S##_generic) *loop;                                            \
        T decay_factor, weight_decay, lerp_weight, beta2, one_minus_beta2, eps;          \
        int mode, small;                                                                 \
        double lr, beta1_d, beta2_d;                                                     \
    } adam_call_##S;                                                                     \
    static void adam_part_##S(const adam_call_##S *c, size_t b, size_t off, size_t len,  \
                              T *const *params, T *const *exp_avgs,                      \
                              T *const *exp_avg_sqs, const T *const *grads,              \
                              const long long *steps)                                    \
    {                                                                                    \
        T step_size = (T)(c->lr / (1.0 - pow(c->beta1_d, (double)steps[b])));            \
        T bc2_sqrt = (T)sqrt(1.0 - pow(c->beta2_d, (double)steps[b]));                   \
        c->loop(len, params[b] + off, exp_avgs[b] + off, exp_avg_sqs[b] + off,           \
                grads[b] + off, c->decay_factor, c->weight_decay, c->mode,               \
                c->lerp_weight, c->small, c->beta2, c->one_minus_beta2, bc2_sqrt,        \
                c->eps, step_size);                                                      \
    }                                                                                    \
    int mg_adam_step_multi_##S(size_t count, T *const *params, T *const *exp_avgs,       \
                               T *const *exp_avg_sqs, const T *const *grads,             \
                               const size_t *lens, const long long *steps, double lr,    \
                               double beta1, double beta2, double eps,                   \
                               double weight_decay, int decoupled)                       \
    {                                                                                    \
        double weight = 1.0 - beta1;                                                     \
        int small = weight < 0.5;                                                        \
        adam_call_##S c = {adam_##S##_loops[mg_simd_level()],                            \
                           (T)(1.0 - lr * weight_decay),                                 \
                           (T)weight_decay,                                              \
                           (T)(small ? weight : 1.0 - weight),                           \
                           (T)beta2,                                                     \
                           (T)(1.0 - beta2),                                             \
                           (T)eps,                                                       \
                           weight_decay == 0.0 ? 0 : (decoupled ? 1 : 2),                \
                           small,                                                        \
                           lr,                                                           \
                           beta1,                                                        \
                           beta2};                                                       \
        size_t total = total_length(count, lens);                                        \
        if (!optim_use_threads(total)) {                                                 \
            for (size_t b = 0; b < count; b++) {                                         \
                if (lens[b] > 0)                                                         \
                    adam_part_##S(&c, b, 0, lens[b], params, exp_avgs, exp_avg_sqs,      \
                                  grads, steps);                                         \
            }                                                                            \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(total, 16);                                     \
            size_t start = 0, off, len;                                                  \
            for (size_t b = 0; b < count; start += lens[b], b++) {                       \
                len = overlap(start, lens[b], r.lo, r.lo + r.len, &off);                 \
                if (len > 0)                                                             \
                    adam_part_##S(&c, b, off, len, params, exp_avgs, exp_avg_sqs, grads, \
                                  steps);                                                \
            }                                                                            \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_adam_step_##S(size_t n, T *param, T *exp_avg, T *exp_avg_sq, const T *grad,   \
                         long long step, double lr, double beta1, double beta2,          \
                         double eps, double weight_decay, int decoupled)                 \
    {                                                                                    \
        return mg_adam_step_multi_##S(1, &param, &exp_avg, &exp_avg_sq, &grad, &n, &step, \
                                      lr, beta1, beta2, eps, weight_decay, decoupled);   \
    }

DEFINE_OPTIM_KERNELS(float, f32)
DEFINE_OPTIM_KERNELS(double, f64)
