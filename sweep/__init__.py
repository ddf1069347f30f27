"""Driver side of xstilts: spec -> plan (a DAG of jobs) -> Ray Tune -> MLflow -> report."""
