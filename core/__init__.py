"""The small shared kernel every stage may import: state paths, config loading, stage stats,
atomic writes and the model-artifact format. Nothing here imports Prefect or a heavy library at
module top."""
