"""The recommender's pure parts on small in-memory data: splits, metrics, baselines, inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from retailstream.errors import UserError
from retailstream.ml import implicit
from retailstream.ml import recommender as rec
from retailstream.ml.ratings_input import (
    detect_format,
    match_columns,
    read_ratings,
    require_variety,
    sniff_format,
)
from retailstream.ml.splits import ratings_split, time_split, untimed_reason
from support import PYSPARK_MOVIELENS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ratings(spark: SparkSession, rows: Sequence[tuple[str, str, float, int]]) -> DataFrame:
    """(customer, sku, stars, minutes after T0) rows as a ratings frame."""
    return spark.createDataFrame(
        [(c, s, float(x), T0 + timedelta(minutes=m)) for c, s, x, m in rows],
        "customer_id string, sku string, stars double, event_time timestamp",
    )


def test_time_split_keeps_the_newest_ratings_for_the_holdout(spark: SparkSession) -> None:
    ratings = _ratings(spark, [("C1", f"S{i}", 3, i) for i in range(100)])
    split = time_split(ratings, holdout_fraction=0.2, validation_fraction=0.25)
    minutes = {
        name: sorted(
            int((r["event_time"].replace(tzinfo=UTC) - T0).total_seconds() // 60)
            for r in part.collect()
        )
        for name, part in (
            ("train", split.train),
            ("validation", split.validation),
            ("holdout", split.holdout),
        )  # fmt: skip
    }
    assert sum(len(m) for m in minutes.values()) == 100  # nothing lost, nothing twice
    assert max(minutes["train"]) < min(minutes["validation"])
    assert max(minutes["validation"]) < min(minutes["holdout"])
    assert 18 <= len(minutes["holdout"]) <= 22
    assert 18 <= len(minutes["validation"]) <= 22


def test_ranking_metrics_match_a_hand_computation(spark: SparkSession) -> None:
    lists = spark.createDataFrame(
        [("A", 1, "x"), ("A", 2, "y"), ("A", 3, "z"), ("B", 1, "x"), ("B", 2, "w"), ("C", 1, "q")],
        "customer_id string, rank int, sku string",
    )
    holdout = _ratings(
        spark,
        [("A", "y", 5, 0), ("A", "z", 4, 0), ("A", "v", 5, 0),  # A: hits at ranks 2 and 3
         ("B", "v", 5, 0), ("B", "x", 2, 0),  # B: x is not relevant (2 stars): no hit
         ("D", "x", 5, 0)],  # D has no list: not judged
    )  # fmt: skip
    got = rec.ranking_metrics(lists, holdout, relevant_stars=4, k=3)
    # A: 2 hits / 3; DCG = 1/log2(3) + 1/log2(4); IDCG (3 relevant, k=3) = 1 + 1/log2(3) + 1/2.
    ndcg_a = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3) + 0.5)
    assert got["ranked_customers"] == 2  # A and B (C has no relevant held-out rating)
    assert got["precision_at_3"] == pytest.approx((2 / 3 + 0) / 2)
    assert got["ndcg_at_3"] == pytest.approx((ndcg_a + 0) / 2)


def test_popular_lists_skip_what_the_customer_rated(spark: SparkSession) -> None:
    train = _ratings(
        spark,
        [("A", "x", 5, 0), ("B", "x", 5, 0), ("C", "x", 4, 0), ("A", "y", 5, 0), ("B", "y", 4, 0),
         ("C", "z", 5, 0), ("A", "w", 1, 0)],
    )  # fmt: skip
    popular = rec.popular_items(train, relevant_stars=4)
    lists = rec.recommend_popular(train.select("customer_id"), train, popular, k=2)
    got = {(r["customer_id"], r["rank"]): r["sku"] for r in lists.collect()}
    assert got == {("A", 1): "z", ("B", 1): "z", ("B", 2): "w", ("C", 1): "y", ("C", 2): "w"}


def test_the_item_mean_baseline_falls_back_to_the_global_mean(spark: SparkSession) -> None:
    train = _ratings(spark, [("A", "x", 5, 0), ("B", "x", 3, 0), ("A", "y", 1, 0)])
    rows = _ratings(spark, [("C", "x", 4, 9), ("C", "new", 4, 9)])
    got = {r["sku"]: r["prediction"] for r in rec.item_mean_predictions(train, rows).collect()}
    assert got == {"x": 4.0, "new": 3.0}


def test_predictions_are_shrunk_item_means_plus_customer_biases_before_tastes(
    spark: SparkSession,
) -> None:
    rows = [("A", "x", 5, 0), ("A", "y", 4, 1), ("B", "x", 3, 2), ("B", "z", 1, 3),
            ("C", "y", 2, 4), ("C", "z", 2, 5), ("C", "x", 4, 6)]  # fmt: skip
    # A regularisation this strong leaves no taste: predictions are the biases alone.
    model = rec.fit_als(_ratings(spark, rows), rank=2, reg_param=1e6, max_iter=2, seed=1)
    s = rec.BIAS_SMOOTHING

    def shrunk(values: list[float], towards: float) -> float:
        return (sum(values) + s * towards) / (len(values) + s)

    overall = sum(r[2] for r in rows) / len(rows)
    item_mean = {i: shrunk([r[2] for r in rows if r[1] == i], overall) for i in "xyz"}
    after = [(c, stars - item_mean[i]) for c, i, stars, _ in rows]
    mean_after = sum(d for _, d in after) / len(after)
    bias = {c: shrunk([d for who, d in after if who == c], mean_after) for c in "ABC"}
    pairs = _ratings(spark, [("A", "z", 3, 9), ("C", "y", 3, 9), ("B", "y", 3, 9)])
    got = {(r["customer_id"], r["sku"]): r["prediction"] for r in model.transform(pairs).collect()}
    assert got == {
        (c, i): pytest.approx(item_mean[i] + bias[c], abs=1e-4)
        for c, i in [("A", "z"), ("C", "y"), ("B", "y")]
    }


def test_lists_follow_the_predicted_stars(spark: SparkSession) -> None:
    """The item means are part of the ranking (folded into ALS's factors): a customer's
    list is in the order of the stars the model predicts, less one constant per customer."""
    rows = [(f"C{c}", f"S{(c * 7 + k * 3) % 12}", 1 + (c * k + k) % 5, c * 10 + k)
            for c in range(8) for k in range(5)]  # fmt: skip
    ratings = _ratings(spark, rows)
    model = rec.fit_als(ratings, rank=3, reg_param=0.1, max_iter=5, seed=1)
    lists = rec.recommend(model, ratings.select("customer_id"), ratings, k=4).collect()
    scored = model.transform(
        spark.createDataFrame(
            [(r["customer_id"], r["sku"]) for r in lists], "customer_id string, sku string"
        )
    ).collect()
    predicted = {(r["customer_id"], r["sku"]): r["prediction"] for r in scored}
    rated = {(c, i) for c, i, _, _ in rows}
    by_customer: dict[str, list[tuple[int, float, float]]] = {}
    for r in lists:
        assert (r["customer_id"], r["sku"]) not in rated
        by_customer.setdefault(r["customer_id"], []).append(
            (r["rank"], r["score"], predicted[(r["customer_id"], r["sku"])])
        )
    assert len(by_customer) == 8
    # And they are the best four of all the skus each customer has not rated.
    unrated = [(f"C{c}", f"S{i}") for c in range(8) for i in range(12)]
    unrated = [pair for pair in unrated if pair not in rated]
    everything = model.transform(
        spark.createDataFrame(unrated, "customer_id string, sku string")
    ).collect()
    for customer, ranked in by_customer.items():
        mine = sorted(
            (r["prediction"] for r in everything if r["customer_id"] == customer), reverse=True
        )
        assert sorted((stars for _, _, stars in ranked), reverse=True) == pytest.approx(mine[:4])
    for ranked in by_customer.values():
        ranked.sort()
        gaps = [stars - score for _, score, stars in ranked]
        assert max(gaps) - min(gaps) == pytest.approx(0.0, abs=1e-4)
        assert [score for _, score, _ in ranked] == sorted((s for _, s, _ in ranked), reverse=True)


def test_column_names_are_matched_from_the_usual_spellings() -> None:
    assert match_columns(["userId", "movieId", "rating", "timestamp"]) == {
        "customer_id": "userId", "sku": "movieId", "stars": "rating", "event_time": "timestamp",
    }  # fmt: skip
    assert match_columns(["user_id", "item_id", "Stars"]) == {
        "customer_id": "user_id", "sku": "item_id", "stars": "Stars",
    }  # fmt: skip


def test_a_file_s_first_bytes_tell_its_format() -> None:
    assert sniff_format(b"PAR1\x15\x04") == "parquet"
    assert sniff_format(b"\n0::2::3::1424380312\n0::3::1::1424380312\n") == "movielens"
    assert sniff_format(b"0::2::3\n") == "movielens"  # MovieLens without timestamps
    assert sniff_format(b"userId,movieId,rating,timestamp\n1,2,3.5,1\n") == "csv"
    assert sniff_format(b'"user_id","item","stars"\n') == "csv"
    # A header without a rating column, prose and nothing at all do not tell.
    assert sniff_format(b"user,item,clicks\n") is None
    assert sniff_format(b"hello world\n") is None
    assert sniff_format(b"") is None


def test_files_are_recognised_by_content_before_their_extension(tmp_path: Path) -> None:
    txt = tmp_path / "ratings.txt"
    txt.write_text("1::10::4.5::1700000000\n")
    named_csv = tmp_path / "ml.csv"
    named_csv.write_text("1::10::4.5\n")
    bare = tmp_path / "ratings"
    bare.write_text("userId,movieId,rating\n1,10,4.5\n")
    assert [detect_format(p) for p in (txt, named_csv, bare)] == ["movielens", "movielens", "csv"]
    assert detect_format(PYSPARK_MOVIELENS) == "movielens"
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(UserError, match="is empty"):
        detect_format(empty)


def test_formats_are_told_by_extension_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    assert detect_format(tmp_path / "r.csv") == "csv"
    assert detect_format(tmp_path / "ratings.dat") == "movielens"
    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    (log / f"{0:020d}.json").write_text("{}\n")  # a Delta table: a log with a commit
    assert detect_format(tmp_path / "t") == "delta"
    with pytest.raises(UserError, match="cannot tell the format"):
        detect_format(tmp_path / "ratings.xlsx")


def test_csv_and_movielens_files_read_to_the_same_ratings(
    spark: SparkSession, tmp_path: Path
) -> None:
    csv = tmp_path / "ratings.csv"
    csv.write_text("userId,movieId,rating,timestamp\n1,10,4.5,1700000000\n2,20,3,1700000060\n")
    dat = tmp_path / "ratings.dat"
    dat.write_text("1::10::4.5::1700000000\n2::20::3::1700000060\n\n")
    rows = [sorted(tuple(r) for r in read_ratings(spark, p).collect()) for p in (csv, dat)]
    assert rows[0] == rows[1]
    assert rows[0][0][:3] == ("1", "10", 4.5)
    assert rows[0][0][3].replace(tzinfo=UTC) == datetime.fromtimestamp(1700000000, UTC)


def test_pyspark_s_movielens_sample_reads_with_its_timestamps_and_without(
    spark: SparkSession,
) -> None:
    timed = read_ratings(spark, PYSPARK_MOVIELENS)
    untimed = read_ratings(spark, PYSPARK_MOVIELENS.parent.parent / "sample_movielens_data.txt")
    assert timed.count() == 1501 and untimed.count() == 1501
    assert timed.where("event_time is null").count() == 0
    assert untimed.where("event_time is null").count() == 1501
    assert timed.drop("event_time").exceptAll(untimed.drop("event_time")).count() == 0


def test_a_time_split_is_refused_when_times_are_missing_or_too_few() -> None:
    sizes = {"all": 100, "timed": 100, "train": 64, "validation": 16, "holdout": 20}
    assert untimed_reason(sizes) is None
    assert untimed_reason({**sizes, "all": 0, "timed": 0, "train": 0, "holdout": 0}) is None
    assert untimed_reason({**sizes, "timed": 90}) == "10 of 100 have no timestamp"
    tied = untimed_reason({**sizes, "train": 0, "validation": 0, "holdout": 100})
    assert tied is not None and "0 train / 0 validation / 100 holdout" in tied


def test_ratings_with_tied_times_are_split_at_random_reproducibly(spark: SparkSession) -> None:
    tied = _ratings(spark, [(f"C{i % 7}", f"S{i % 11}", 3, 0) for i in range(400)])
    split, reason = ratings_split(tied, 0.2, 0.2, seed=7)
    again, _ = ratings_split(tied, 0.2, 0.2, seed=7)
    assert reason is not None and "too few to cut by time" in reason
    sizes = split.sizes()
    assert sum(sizes.values()) == 400 and min(sizes.values()) > 0
    assert sorted(split.holdout.collect()) == sorted(again.holdout.collect())
    assert math.isinf(split.validation_start) and math.isinf(split.holdout_start)
    spread = _ratings(spark, [("C1", f"S{i}", 3, i) for i in range(100)])
    by_time, reason = ratings_split(spread, 0.2, 0.2, seed=7)
    assert reason is None and by_time.holdout_start == time_split(spread, 0.2, 0.2).holdout_start


def test_ratings_by_one_customer_or_of_one_item_are_refused(spark: SparkSession) -> None:
    one_customer = _ratings(spark, [("C1", f"S{i}", 3, i) for i in range(50)])
    with pytest.raises(UserError, match=r"ratings by 1 customer\(s\) of 50 item\(s\)"):
        require_variety(one_customer, "mine.csv")
    require_variety(_ratings(spark, [("C1", "S1", 3, 0), ("C2", "S2", 4, 1)]), "ok.csv")


def test_a_file_without_a_rating_column_names_what_it_found(
    spark: SparkSession, tmp_path: Path
) -> None:
    bad = tmp_path / "clicks.csv"
    bad.write_text("user,item,clicks\n1,2,3\n")
    with pytest.raises(UserError, match="no column for stars among user, item, clicks"):
        read_ratings(spark, bad)


def test_retraining_intervals_read_like_people_write_them() -> None:
    from retailstream.jobs.retrain import interval_seconds

    assert [interval_seconds(t) for t in ("90", "90s", "15m", "6h", "1d", "0.5s")] == [
        90, 90, 900, 21600, 86400, 0.5,
    ]  # fmt: skip
    for bad in ("", "0s", "6 hours", "-1m", "1w"):
        with pytest.raises(UserError, match="not an interval"):
            interval_seconds(bad)


def test_implicit_signals_weigh_each_act_and_sum_per_customer_and_sku_before_a_cut(
    spark: SparkSession,
) -> None:
    at = [T0 + timedelta(minutes=m) for m in range(4)]
    clicks = spark.createDataFrame(
        [("C1", "S1", "view", at[0]), ("C1", "S1", "add_to_cart", at[1]),
         ("C1", "S2", "remove_from_cart", at[1]), (None, "S1", "view", at[1]),
         ("C2", "S1", "wishlist", at[3])],
        "customer_id string, sku string, action string, event_time timestamp",
    )  # fmt: skip
    orders = spark.createDataFrame(
        [("C1", [("S1",), ("S3",)], at[2])],
        "customer_id string, lines array<struct<sku: string>>, event_time timestamp",
    )
    ratings = _ratings(spark, [("C1", "S3", 5, 2), ("C1", "S4", 2, 2)])
    weights = {"view": 1.0, "add_to_cart": 3.0, "remove_from_cart": 0.0, "wishlist": 2.0,
               "order": 5.0, "rating": 4.0}  # fmt: skip
    acts = implicit.signals(clicks, orders, ratings, weights, relevant_stars=4)
    # No anonymous click, no zero-weight act, no poor rating.
    assert acts.count() == 6
    before_last = {
        (r["customer_id"], r["sku"]): r["strength"]
        for r in implicit.strengths(acts, before=at[3].timestamp()).collect()
    }
    # S1: view 1 + cart 3 + ordered 5; S3: ordered 5 + rated 5 stars 4; C2's wishlist is too late.
    assert before_last == {("C1", "S1"): 9.0, ("C1", "S3"): 9.0}
