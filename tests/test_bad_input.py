"""Every public entry point refuses bad input with the right exception and a
message that names the op (or PyTorch's own wording, where PyTorch has one)."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn, optim

x = mg.randn(2, 3)
ints = mg.tensor([1, 2])


def param():
    return mg.zeros(2, requires_grad=True)


ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)
SGD = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)


def f32(*shape):
    return np.zeros(shape, np.float32)


def read_only(a):
    a.flags.writeable = False
    return a


CASES = [
    # (id, call, exception, pattern the message must match)
    ("tensor-float16", lambda: mg.tensor(np.zeros(2, np.float16)), TypeError, "tensor: dtype float16"),
    ("tensor-object", lambda: mg.tensor(np.array([object()])), TypeError, "tensor: .*object"),
    ("from_numpy-list", lambda: mg.from_numpy([1.0]), TypeError, "from_numpy"),
    ("zeros-negative", lambda: mg.zeros(-1), ValueError, "zeros: size"),
    ("requires_grad-int", lambda: mg.zeros(2, dtype=mg.int64, requires_grad=True), RuntimeError, "floating point"),
    ("add-shapes", lambda: x + mg.ones(4), ValueError, r"add: shapes \(2, 3\) and \(4,\)"),
    ("sub-shapes", lambda: x - mg.ones(4), ValueError, "sub: shapes"),
    ("mul-shapes", lambda: x * mg.ones(4), ValueError, "mul: shapes"),
    ("div-shapes", lambda: x / mg.ones(4), ValueError, "div: shapes"),
    ("pow-shapes", lambda: x ** mg.ones(4), ValueError, "pow: shapes"),
    ("matmul-inner", lambda: x @ mg.ones(4, 2), ValueError, r"matmul: shapes \(2, 3\) and \(4, 2\)"),
    ("matmul-0d", lambda: mg.tensor(1.0) @ x, ValueError, "matmul: both operands"),
    ("clamp-no-bound", lambda: x.clamp(), ValueError, "clamp: at least one"),
    ("sum-dim", lambda: x.sum(dim=3), IndexError, "sum: dim 3"),
    ("mean-dim", lambda: x.mean(dim=-3), IndexError, "mean: dim -3"),
    ("var-repeated-dim", lambda: x.var(dim=(0, 0)), ValueError, "var: dim"),
    ("max-empty", lambda: mg.zeros(0).max(), ValueError, "max: the tensor is empty"),
    ("max-dim-tuple", lambda: x.max(dim=(0, 1)), TypeError, "max: dim must be one int"),
    ("reshape", lambda: x.reshape(7), ValueError, r"reshape: cannot view a tensor of shape \(2, 3\)"),
    ("permute-count", lambda: x.permute(0), ValueError, "permute: got 1 dims"),
    ("transpose-dim", lambda: x.transpose(0, 2), IndexError, "transpose: dim 2"),
    ("getitem-range", lambda: x[5], IndexError, "getitem: index 5"),
    ("cat-empty", lambda: mg.cat([]), TypeError, "cat: expected a non-empty sequence"),
    ("cat-shapes", lambda: mg.cat([x, mg.ones(2, 4)]), ValueError, "cat: tensor 1 has shape"),
    ("stack-shapes", lambda: mg.stack([x, mg.ones(3, 2)]), ValueError, "stack: tensor 1 has shape"),
    ("relu-int", lambda: ints.relu(), TypeError, "relu: input has dtype int64"),
    ("sigmoid-int", lambda: ints.sigmoid(), TypeError, "sigmoid: input has dtype int64"),
    ("tanh-int", lambda: ints.tanh(), TypeError, "tanh: input has dtype int64"),
    ("softmax-int", lambda: ints.softmax(0), TypeError, "softmax: input has dtype int64"),
    ("log_softmax-dim", lambda: x.log_softmax(2), IndexError, "log_softmax: dim 2"),
    ("leaky_relu-int", lambda: F.leaky_relu(ints), TypeError, "leaky_relu: input has dtype int64"),
    ("gelu-approximate", lambda: F.gelu(x, approximate="fast"), ValueError, "gelu: .*approximate"),
    ("linear-shape", lambda: F.linear(x, mg.randn(4, 5)), ValueError, "linear: input of shape"),
    ("linear-dtype", lambda: F.linear(x.double(), mg.randn(4, 3)), TypeError, "linear: weight is float32"),
    ("Linear-features", lambda: nn.Linear(4, 2)(x), ValueError, "linear: input of shape"),
    ("Linear-negative", lambda: nn.Linear(-1, 2), ValueError, "Linear: in_features"),
    ("batch_norm-features", lambda: nn.BatchNorm1d(4)(x), ValueError, "batch_norm: weight has shape"),
    ("batch_norm-one-sample", lambda: nn.BatchNorm1d(3)(mg.randn(1, 3)), ValueError, "more than 1 value per channel"),
    ("layer_norm-shape", lambda: F.layer_norm(x, (4,)), ValueError, "layer_norm: input of shape"),
    ("dropout-p", lambda: F.dropout(x, p=1.5), ValueError, "dropout: .*'p'"),
    ("cross_entropy-class", lambda: F.cross_entropy(x, mg.tensor([0, 3])), IndexError, "cross_entropy: target 3"),
    ("cross_entropy-shape", lambda: F.cross_entropy(x, mg.tensor([0, 1, 2])), ValueError, "cross_entropy: class-index target"),
    ("bce-shape", lambda: F.binary_cross_entropy_with_logits(x, mg.zeros(3, 2)), ValueError, "binary_cross_entropy_with_logits: target size"),
    ("mse-reduction", lambda: F.mse_loss(x, x, reduction="avg"), ValueError, "mse_loss: .*'reduction'"),
    ("l1-reduction", lambda: F.l1_loss(x, x, reduction="avg"), ValueError, "l1_loss: .*'reduction'"),
    ("backward-shape", lambda: (mg.ones(2, requires_grad=True) * 2).backward(mg.ones(3)), ValueError, "backward: gradient has shape"),
    ("backward-no-grad", lambda: mg.ones(2).sum().backward(), RuntimeError, "backward: this tensor does not require grad"),
    ("item-many", lambda: x.item(), ValueError, r"item\(\): the tensor has 6 elements"),
    ("inplace-leaf", lambda: param().add_(1), RuntimeError, "add_: a leaf tensor that requires grad"),
    ("SGD-lr", lambda: optim.SGD([param()], lr=-1), ValueError, "Invalid learning rate"),
    ("Adam-betas", lambda: optim.Adam([param()], betas=(1.5, 0.9)), ValueError, "Invalid beta parameter"),
    ("AdamW-eps", lambda: optim.AdamW([param()], eps=-1.0), ValueError, "Invalid epsilon value"),
    ("clip-norm-type", lambda: nn.utils.clip_grad_norm_([param()], 1.0, norm_type="fro"), ValueError, "clip_grad_norm_: norm_type"),
    ("init-1d", lambda: nn.init.xavier_uniform_(mg.zeros(3)), ValueError, "fewer than 2 dimensions"),
    ("init-gain", lambda: nn.init.calculate_gain("swish"), ValueError, "swish"),
    ("load_state_dict-shape", lambda: nn.Linear(2, 2).load_state_dict({"weight": mg.zeros(3, 3), "bias": mg.zeros(2)}), RuntimeError, "size mismatch for weight"),
    ("load-missing", lambda: mg.load("/nonexistent/m.safetensors"), FileNotFoundError, "load: no such file"),
    ("save-value", lambda: mg.save({"a": 1}, "/tmp/never-written.safetensors"), TypeError, "save: value for key 'a'"),
    ("DataLoader-lengths", lambda: mg.data.DataLoader((np.zeros(3), np.zeros(4))), ValueError, "DataLoader: the arrays"),
    ("set_backend", lambda: mg.set_backend("gpu"), ValueError, "set_backend: name"),
    ("set_num_threads", lambda: mg.set_num_threads(0), ValueError, "set_num_threads: n"),
    ("adam_step_multi-lengths", lambda: mg.backend.active.adam_step_multi_([f32(2)], [], [], [], steps=[], **ADAM), ValueError, "adam_step_multi_: grads has 0 entries but params has 1"),
    ("adam_step_multi-shape", lambda: mg.backend.active.adam_step_multi_([f32(2)], [f32(3)], [f32(2)], [f32(2)], steps=[1], **ADAM), ValueError, r"adam_step_multi_: grads\[0\] has shape \(3,\) but params\[0\] has shape \(2,\)"),
    ("adam_step_multi-int", lambda: mg.backend.active.adam_step_multi_([np.zeros(2, np.int32)], [f32(2)], [f32(2)], [f32(2)], steps=[1], **ADAM), TypeError, r"adam_step_multi_: params\[0\] must be a float32 or float64 array, got int32"),
    ("sgd_step_multi-dtype", lambda: mg.backend.active.sgd_step_multi_([f32(2)], [np.zeros(2, np.float16)], None, first_steps=[True], **SGD), TypeError, r"sgd_step_multi_: grads\[0\] is float16 but params\[0\] is float32"),
    ("sgd_step_multi-read-only", lambda: mg.backend.active.sgd_step_multi_([read_only(f32(2))], [f32(2)], None, first_steps=[True], **SGD), ValueError, r"sgd_step_multi_: params\[0\] is read-only"),
    ("gradcheck-float32", lambda: mg.gradcheck(lambda t: t * 2, [mg.randn(2, requires_grad=True)]), TypeError, "gradcheck: input 0 is float32"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_clear_error(backend, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
