"""InstSeg engine: config, data, models, training, evaluation, prediction and export."""
from engine.runtime import blas_dispatch, quiet_warnings

quiet_warnings.install()  # before anything here imports Paddle
blas_dispatch.use_avx2_blas_on_amd()  # before the first GEMM, which is when MKL reads its setting
