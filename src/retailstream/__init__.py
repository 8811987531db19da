"""retailstream: event-driven retail analytics on Spark, Kafka, Delta Lake and MLflow."""

from importlib import resources

__version__ = resources.files(__package__).joinpath("VERSION").read_text().strip()
