"""The pcd service: study runner (Ray Tune + Optuna + MLflow), and later the REST API.

Data flows one way: API -> store -> runner -> pcd_core; pcd_core imports nothing from here.
"""
