"""
PyTorch's float32 CPU BatchNorm on the extreme data of bench/extremes.mjs (the README's
"Semantics" and "Backward and fused ReLU" compare the two), against float64 autograd on the same
float32 inputs. Not part of any npm script: CI has no Python.

    python3 bench/torch/extremes.py

Errors are the largest |float32 - float64| over the largest |float64| of channel 1, which holds
the extreme data, where the float64 one fits float32; then its NaN, and how many results past
float32's range came out as infinities of their sign. invstd is PyTorch's saved float32 one.
"""
import torch
import torch.nn.functional as F

torch.manual_seed(12345)


def tensor(shape, offset, spread):
    """Channel 1 as offset + spread·N(0, 1), the others N(c - 1.5, 1 + c), rounded to float32."""
    x = torch.empty(shape, dtype=torch.float64)
    for c in range(shape[1]):
        if c == 1:
            x[:, c] = offset + spread * torch.randn(x[:, c].shape, dtype=torch.float64)
        else:
            x[:, c] = c - 1.5 + (1 + c) * torch.randn(x[:, c].shape, dtype=torch.float64)
    return x.float()


def run(x, dy, weight, dtype):
    x = x.detach().to(dtype).clone().requires_grad_(True)
    w = torch.full((x.shape[1],), weight, dtype=dtype, requires_grad=True)
    b = torch.zeros(x.shape[1], dtype=dtype, requires_grad=True)
    y = F.batch_norm(x, None, None, w, b, training=True)
    y.backward(dy.to(dtype))
    return y.detach(), x.grad, w.grad


FLOAT32_MAX = 3.4028234663852886e38


def error(got, want):
    """As bench/extremes.mjs: the error where want fits float32, NaN, and infinities past it."""
    got, want = got[:, 1].double().flatten(), want[:, 1].flatten()
    nan = torch.isnan(got)
    past = ~nan & (want.abs() > FLOAT32_MAX)
    fits = ~nan & ~past
    infinite = int((got[past] == torch.sign(want[past]) * float('inf')).sum())
    text = f"{((got[fits] - want[fits]).abs().max() / want[fits].abs().max()).item():.2e}" if fits.any() else "-"
    notes = []
    if nan.any():
        notes.append(f"{int(nan.sum())} NaN")
    if past.any():
        notes.append(f"{int(past.sum())} past float32, {infinite} of them ±Inf of their sign")
    return text + (f" ({'; '.join(notes)})" if notes else "")


CASES = [
    ("x, dy of spread 1e20 (products 1e40)", [2, 3, 40, 40], 0, 1e20, 0, 1e20, 1),
    ("x, dy of spread 1e-20 (products 1e-40)", [2, 3, 40, 40], 0, 1e-20, 0, 1e-20, 1),
    ("x of spread 1e25, dy of 1", [2, 3, 40, 40], 0, 1e25, 0, 1, 1),
    ("x of spread 1e30, weight 1e-20", [2, 3, 40, 40], 0, 1e30, 0, 1, 1e-20),
    ("x of spread 1e12, dy of 1e-30", [2, 3, 40, 40], 0, 1e12, 0, 1e-30, 1),
    ("dy of 1e29 ± 1e30, weight 1e20", [2, 3, 40, 40], 0.5, 1, 1e29, 1e30, 1e20),
    ("dy of 1000 ± 1e-3", [2, 3, 40, 40], 0.5, 1, 1000, 1e-3, 1),
    ("dy of 1000 ± 1e-3", [64, 20], 0.5, 1, 1000, 1e-3, 1),
    ("dy of 1000 ± 1e-3", [64, 3], 0.5, 1, 1000, 1e-3, 1),
]

print(f"PyTorch {torch.__version__}, float32 CPU, {torch.get_num_threads()} threads, channel 1:")
for label, shape, x_offset, x_spread, dy_offset, dy_spread, weight in CASES:
    x = tensor(shape, x_offset, x_spread)
    dy = tensor(shape, dy_offset, dy_spread)
    y32, dx32, dw32 = run(x, dy, weight, torch.float32)
    y64, dx64, dw64 = run(x, dy, weight, torch.float64)
    invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.1, 1e-5)[2][1].item()
    dw = abs(dw32[1].item() - dw64[1].item()) / abs(dw64[1].item())
    print(f"  {label + ', ' + str(shape):50} invstd {invstd:.3g}  y {error(y32, y64):10} "
          f"dx {error(dx32, dx64):48} dWeight {dw:.2e}")
