"""Scraping ``/metrics`` and reading it with prometheus_client's own text parser."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

from conftest import REPO_ROOT
from prometheus_client.parser import text_string_to_metric_families

Sample = Tuple[Dict[str, str], float]


def documented_metrics() -> set:
    """The metric names in the first column of docs/metrics.md's tables."""
    text = (REPO_ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(launchbay_[a-z_]+)` \|", text, re.MULTILINE))


def scrape(url: str, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def try_scrape(url: str) -> Optional[str]:
    """The page, or None while nothing answers yet."""
    try:
        return scrape(url, timeout_s=5.0)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class Scrape:
    """One scrape, parsed: ``value(name, **labels)`` and ``samples(name)``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types = {}
        self._samples: Dict[str, List[Sample]] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self._samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))

    def metric_names(self) -> set:
        """Every metric family served, with or without samples, as docs/metrics.md names it
        (counters with ``_total``, histograms without their suffixes)."""
        return {name + "_total" if kind == "counter" else name for name, kind in self.types.items()}

    def samples(self, name: str) -> List[Sample]:
        return self._samples.get(name, [])

    def value(self, name: str, **labels: str) -> float:
        """The one sample of ``name`` whose labels include ``labels``; fails if none or several match."""
        found = [v for got, v in self.samples(name) if all(got.get(k) == w for k, w in labels.items())]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples in\n{self.text}"
        return found[0]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for got, v in self.samples(name) if all(got.get(k) == w for k, w in labels.items()))
