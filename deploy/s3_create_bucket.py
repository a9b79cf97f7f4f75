#!/usr/bin/env python
"""Create the S3 bucket of the deployment once the S3 service answers (idempotent).

Run by the compose service ``s3-init`` (in the MLflow image, which has boto3). Settings from
the environment: S3_ENDPOINT_URL, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION; S3_INIT_TIMEOUT (seconds, default 120) bounds the wait for the server.
"""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def create_bucket(endpoint: str, bucket: str, timeout: float) -> str:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.head_bucket(Bucket=bucket)
            return "exists"
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            s3.create_bucket(Bucket=bucket)
            return "created"
        except BotoCoreError as e:  # not answering yet
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"s3-init: {endpoint} did not answer in {timeout:.0f} s: {e}"
                ) from e
            time.sleep(1)


def main() -> None:
    endpoint = os.environ["S3_ENDPOINT_URL"]
    bucket = os.environ["S3_BUCKET"]
    try:
        what = create_bucket(endpoint, bucket, float(os.environ.get("S3_INIT_TIMEOUT", "120")))
    except ClientError as e:
        sys.exit(f"s3-init: bucket {bucket!r} at {endpoint}: {e}")
    print(f"s3-init: bucket {bucket!r} {what} at {endpoint}")


if __name__ == "__main__":
    main()
