"""Shape buckets (engine/buckets.py): what a compiling backend pads a call to."""

from arraygpt.engine.buckets import Bucket, bucket


def test_buckets_are_powers_of_two_then_multiples_of_64():
    assert [bucket(n) for n in (1, 2, 3, 5, 16, 17, 64, 65, 128, 129, 1000, 1024)] == \
        [1, 2, 4, 8, 16, 32, 64, 128, 128, 192, 1024, 1024]
    assert all(bucket(n) >= n and bucket(bucket(n)) == bucket(n) for n in range(1, 2000))
    assert all(bucket(n) < 2 * n for n in range(65, 2000))  # under twice the work past 64


def test_a_call_runs_at_its_bucket_never_past_what_it_needs_beyond_the_context():
    assert Bucket.for_call(16, 127, 1024) == Bucket(16, 192, 128)   # 143 slots -> 192
    assert Bucket.for_call(17, 100, 1024) == Bucket(32, 192, 128)
    assert Bucket.for_call(512, 0, 1024) == Bucket(512, 512, 0)     # a prefill: no decode loop
    assert Bucket.for_call(1000, 20, 1024) == Bucket(1024, 1044, 32)  # past the context: what it needs
    assert Bucket.for_call(30, 5, 40) == Bucket(32, 40, 8)          # a small model's context caps the slots
    assert Bucket.exact(7, 3) == Bucket(7, 10, 3)
