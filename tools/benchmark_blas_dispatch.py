"""What engine.runtime.blas_dispatch buys: a matmul and a convolution (forward + backward) in dygraph, with
MKL's own dispatch and with its AVX2 kernels (MKL_DEBUG_CPU_TYPE=5), each in its own process, alternately.

    python tools/benchmark_blas_dispatch.py --threads 2 --rounds 3

Prints GFLOP/s per setting (best of the rounds) and the largest relative difference between the two
settings' outputs (the same seeded inputs), which should be float rounding. On a CPU where blas_dispatch
does not apply (Intel, no AVX2) both settings run MKL's own dispatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from engine.runtime.blas_dispatch import MKL_CPU_TYPE, OPT_OUT, mkl_avx2_setting  # noqa: E402

N = 2048  # matmul N x N @ N x N
CONV = (2, 256, 40, 40)  # batch, channels (in = out), height, width; 3x3 kernel, padding 1


def _worker(threads: int, repeats: int, out_file: str) -> None:
    import numpy as np
    import paddle

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(threads)
    paddle.seed(0)
    a, b = paddle.randn([N, N]), paddle.randn([N, N])
    x = paddle.randn(list(CONV))
    x.stop_gradient = False
    conv = paddle.nn.Conv2D(CONV[1], CONV[1], 3, padding=1)

    def matmul():
        return paddle.matmul(a, b).numpy()

    def conv_step():
        y = conv(x)
        (y * y).mean().backward()
        grad = conv.weight.grad.numpy()  # type: ignore[union-attr]
        return np.concatenate([y.numpy().ravel()[:4096], grad.ravel()])

    result = {}
    conv_flops = 3 * 2.0 * CONV[0] * CONV[1] ** 2 * 9 * CONV[2] * CONV[3]  # forward, input and weight grads
    for name, fn, flops in (("matmul", matmul, 2.0 * N ** 3), ("conv fwd+bwd", conv_step, conv_flops)):
        out = fn()
        best = float("inf")
        for _ in range(repeats):
            conv.clear_gradients()
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        result[name] = flops / best / 1e9
        np.save(f"{out_file}.{name.split()[0]}.npy", out)
    Path(out_file).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.threads, args.repeats, args.worker)
        return
    import numpy as np

    avx2 = mkl_avx2_setting(environ={})
    settings = {"MKL dispatch": {OPT_OUT: "0"}, "blas_dispatch": {}}
    best: dict = {name: {} for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, extra in settings.items():
                env = {k: v for k, v in os.environ.items() if k != MKL_CPU_TYPE}
                env.update(extra)
                out = os.path.join(tmp, name.replace(" ", "_"))
                subprocess.run([sys.executable, __file__, "--worker", out, "--threads", str(args.threads),
                                "--repeats", str(args.repeats)], env=env, check=True)
                for op, gflops in json.loads(Path(out).read_text()).items():
                    best[name][op] = max(best[name].get(op, 0.0), gflops)
        print(f"threads {args.threads}, MKL_DEBUG_CPU_TYPE from blas_dispatch on this CPU: {avx2 or 'none'}")
        for op in best["MKL dispatch"]:
            ref, new = (np.load(os.path.join(tmp, f"{n.replace(' ', '_')}.{op.split()[0]}.npy"))
                        for n in settings)
            rel = float(np.abs(new - ref).max() / max(np.abs(ref).max(), 1e-30))
            old_rate, new_rate = best["MKL dispatch"][op], best["blas_dispatch"][op]
            print(f"{op:13s} MKL dispatch {old_rate:6.1f} GFLOP/s | blas_dispatch {new_rate:6.1f} GFLOP/s "
                  f"| x{new_rate / old_rate:.2f} | max rel diff {rel:.1e}")


if __name__ == "__main__":
    main()
