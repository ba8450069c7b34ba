"""Imported first by evaluation.speed's fork server, and only there: it points that process's
stdout and stderr at /dev/null, so the import-time warnings of torch and torchao (missing CUDA
kernels on a CPU machine) do not reach the pipeline's terminal. The children fork with the same
streams; their results and errors come back through a pipe (evaluation.speed.measure_in_child).
Importing it anywhere else would silence that process: nothing else does."""

import os

_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)
os.dup2(_devnull, 2)
