"""Packaging for retailstream.

Runtime dependencies are pinned to versions that resolve together (checked on
Python 3.11): PySpark 4.2.0 with the matching Delta Lake build, MLflow 3.17.2
and Great Expectations 1.24.1 (without its `[spark]` extra, which caps PySpark
below 4.2). JVM artifacts are pinned separately in `retailstream/jars.py`.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = (HERE / "src" / "retailstream" / "VERSION").read_text().strip()

setup(
    name="retailstream",
    version=VERSION,
    description="Event-driven retail analytics on Spark Structured Streaming, Kafka, Delta Lake and MLflow",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"retailstream": ["py.typed", "VERSION", "resources/*", "serve/static/*"]},
    install_requires=[
        "pyspark==4.2.0",
        # The newest Delta build for Spark 4.2 on Maven Central is 4.4.0 (the
        # 4.4.1 jar is not published), and the Python API must match the jar.
        "delta-spark==4.4.0",
        "mlflow==3.17.2",
        "great-expectations==1.24.1",
        # PySpark 4.2 supports pandas 2.x; it warns on pandas 3.
        "pandas>=2.2,<3",
        "numpy>=1.26,<3",
        "pyarrow>=18,<26",
        "confluent-kafka==2.16.1",
        # The PostgreSQL serving store and `retailstream postgres start` (libpq bundled).
        "psycopg[binary]>=3.2,<4",
        "fastapi>=0.115,<1",
        # Swagger UI and ReDoc served from the package: /docs works offline.
        "fastapi-offline==1.7.7",
        "uvicorn>=0.30,<1",
        # uvicorn's fast event loop and HTTP parser: without them it falls back to pure
        # Python (h11, asyncio): 643 against 910 requests/s, one process, measured with wrk.
        "uvloop==0.23.0",
        "httptools==0.9.0",
        "pydantic>=2.7,<3",
        "PyYAML>=6.0,<7",
        "tqdm>=4.66,<5",
        # The serving store's documents and the real-time folder's fact messages are
        # JSON on the hot path: orjson decodes and encodes them several times faster.
        "orjson==3.13.0",
        # /metrics: pipeline health in Prometheus' text format.
        "prometheus-client==0.26.0",
    ],
    extras_require={
        "dev": [
            "pytest==9.2.0",
            "pytest-timeout==2.4.0",
            "httpx>=0.27,<1",
            # The API's answers checked against its OpenAPI schema with generated requests.
            "schemathesis==4.32.5",
            # Drives Debian's chromium (with its chromedriver) in the browser tests.
            "selenium==4.51.0",  # 4.52 needs a certifi newer than PyPI mirrors here hold
            # Pinned: `make lint` checks formatting, which changes between ruff releases.
            "ruff==0.17.6",
            # `make lint` checks the package's types too (config in pyproject.toml).
            "mypy==2.4.1",
            "pandas-stubs==2.3.3.260113",  # the stubs of the pandas we run (2.3)
            "deltalake==1.6.6",
            # The test suite runs every notebook in a real kernel.
            "nbclient==0.11.0",
            "nbformat==5.11.1",
            "ipykernel==7.4.0",
        ],
        # Reading the lake into pandas without Spark or Java (retailstream.read_lake).
        "analyst": ["deltalake==1.6.6"],
        # Jupyter for the notebooks in notebooks/ (`jupyter lab notebooks/`).
        "notebooks": ["jupyterlab==4.6.6", "ipykernel==7.4.0", "matplotlib>=3.8"],
    },
    entry_points={"console_scripts": ["retailstream=retailstream.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Database",
    ],
)
