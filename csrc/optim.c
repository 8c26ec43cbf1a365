/*
 * optim.c - SGD and Adam/AdamW parameter updates, float and double, one
 * pass over each parameter: read grad (never written), read and write the
 * parameter and the optimizer state.
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

#define DEFINE_OPTIM_KERNELS(T, S)                                                       \
    int mg_sgd_step_##S(size_t n, T *param, T *momentum_buffer, const T *grad,           \
                        double lr, double momentum, double dampening,                    \
                        double weight_decay, int nesterov, int first_step)               \
    {                                                                                    \
        __typeof__(sgd_##S##_generic) *loop = sgd_##S##_loops[mg_simd_level()];          \
        T *buf = momentum != 0.0 ? momentum_buffer : NULL;                               \
        int decay = weight_decay != 0.0;                                                 \
        if (!mg_use_threads(n)) {                                                        \
            loop(n, param, buf, grad, (T)lr, (T)momentum, (T)(1.0 - dampening),          \
                 (T)weight_decay, decay, nesterov, first_step);                          \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(n, 16);                                         \
            loop(r.len, param + r.lo, buf != NULL ? buf + r.lo : NULL, grad + r.lo,      \
                 (T)lr, (T)momentum, (T)(1.0 - dampening), (T)weight_decay, decay,       \
                 nesterov, first_step);                                                  \
        }                                                                                \
        return MG_OK;                                                                    \
    }                                                                                    \
    int mg_adam_step_##S(size_t n, T *param, T *exp_avg, T *exp_avg_sq, const T *grad,   \
                         long long step, double lr, double beta1, double beta2,          \
                         double eps, double weight_decay, int decoupled)                 \
    {                                                                                    \
        __typeof__(adam_##S##_generic) *loop = adam_##S##_loops[mg_simd_level()];        \
        int mode = weight_decay == 0.0 ? 0 : (decoupled ? 1 : 2);                        \
        double weight = 1.0 - beta1;                                                     \
        int small = weight < 0.5;                                                        \
        T lerp_weight = (T)(small ? weight : 1.0 - weight);                              \
        T decay_factor = (T)(1.0 - lr * weight_decay);                                   \
        T step_size = (T)(lr / (1.0 - pow(beta1, (double)step)));                        \
        T bc2_sqrt = (T)sqrt(1.0 - pow(beta2, (double)step));                            \
        if (!mg_use_threads(n)) {                                                        \
            loop(n, param, exp_avg, exp_avg_sq, grad, decay_factor, (T)weight_decay,     \
                 mode, lerp_weight, small, (T)beta2, (T)(1.0 - beta2), bc2_sqrt,         \
                 (T)eps, step_size);                                                     \
            return MG_OK;                                                                \
        }                                                                                \
        MG_OMP_PARALLEL                                                                  \
        {                                                                                \
            mg_range r = mg_thread_share(n, 16);                                         \
            loop(r.len, param + r.lo, exp_avg + r.lo, exp_avg_sq + r.lo, grad + r.lo,    \
                 decay_factor, (T)weight_decay, mode, lerp_weight, small, (T)beta2,      \
                 (T)(1.0 - beta2), bc2_sqrt, (T)eps, step_size);                         \
        }                                                                                \
        return MG_OK;                                                                    \
    }

DEFINE_OPTIM_KERNELS(float, f32)
DEFINE_OPTIM_KERNELS(double, f64)
