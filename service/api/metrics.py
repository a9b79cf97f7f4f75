"""The API's Prometheus metrics, one registry per app (``app.state.metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.store import Store, StudyStatus


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests_total = Counter(
            "pcd_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pcd_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.studies = Gauge("pcd_studies", "studies by status", ["status"], registry=self.registry)

    def exposition(self, store: Store) -> bytes:
        """Every metric in Prometheus' text format, the study counts read now."""
        for status in StudyStatus:
            self.studies.labels(status.value).set(0)
        for status, n in store.counts().items():
            self.studies.labels(status).set(n)
        return generate_latest(self.registry)
