# bench/range64.mjs's cases (float64 near float64's range) through PyTorch's BatchNorm1d: its batch
# mean and variance (momentum 1: the running statistics are the batch's, the variance unbiased),
# y[1], and the backward of the same dy: dWeight and dx[1].
#
#     python3 bench/torch/range64.py
import torch


def u(i):
    return 0.5 + ((i * 7919) % 1000) / 2000


CASES = [
    ('both signs, |x| 0.75e308-1.5e308', lambda i: (1.5e308 if i % 2 else -1.5e308) * u(i)),
    ('all near +1.5e308', lambda i: 1.5e308 + i * 1e292),
    ('all near -1.6e308', lambda i: -1.7e308 + (i % 3) * 1e307),
    ('an outlier 1e153 first, the rest in [0, 1)', lambda i: 1e153 if i == 0 else ((i * 7919) % 1000) / 1000),
]
n = 1000
print(f'PyTorch {torch.__version__}, float64 [4, 1, 250], training forward with momentum 1\n')
print('| data | mean | variance | y[1] | dWeight | dx[1] |')
print('| --- | ---: | ---: | ---: | ---: | ---: |')
dy = torch.tensor([((i * 31) % 7) / 7 - 0.4 for i in range(n)], dtype=torch.float64).reshape(4, 1, 250)
for name, value in CASES:
    x = torch.tensor([value(i) for i in range(n)], dtype=torch.float64).reshape(4, 1, 250).requires_grad_()
    bn = torch.nn.BatchNorm1d(1, momentum=1.0, dtype=torch.float64)
    y = bn(x)
    y.backward(dy)
    var = bn.running_var.item() * (n - 1) / n
    print(f'| {name} | {bn.running_mean.item()!r} | {var!r} | {y.flatten()[1].item()!r} | '
          f'{bn.weight.grad.item()!r} | {x.grad.flatten()[1].item()!r} |')
