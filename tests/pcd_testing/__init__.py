"""Shared test helpers: the API in process with a supervisor that launches nothing, real
processes (API, MLflow server, Ray nodes) started and stopped by
PID, a TCP proxy that a test cuts to make a dependency unreachable, and audits of what a
study left in MLflow. Imported as ``pcd_testing`` (``tests/`` is on pytest's path)."""
