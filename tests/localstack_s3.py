#!/usr/bin/env python3
"""LocalStack's S3 (localstack-core, tests/localstack-requirements.txt) as the second local S3
server for tests: started in this process in host mode, S3 only, on 127.0.0.1, with the
corrections below where LocalStack 2026.3.0 departs from what S3 documents in ways the engine's
tests reach. Usage: `localstack_s3.py --port PORT --root DIR [--plain]`; DIR is scratch space
(LocalStack's FILESYSTEM_ROOT and HOME, and where it keeps object data); the server stops when
the process that started it ends; `--plain` starts LocalStack without the corrections (the
shim's tests use it to show each departure still exists).

What LocalStack gets wrong, and is corrected here:
- CopyObject to a bucket in another region than the source's loses the source's tags with
  `x-amz-tagging-directive: COPY` (the default). S3 API reference, CopyObject: with COPY "the
  object tags are copied from the source object". LocalStack keeps tags per account and region
  and looks the source's up in the destination's region. Corrected: the source's tags are read
  from the source bucket's own region after the copy.
- CopyObject with `x-amz-metadata-directive: COPY` (the default) loses the source's `Expires`.
  S3 API reference, CopyObject: with COPY the metadata is copied from the source object, and
  `Expires` is one of the headers stored with it. LocalStack takes `Expires` from the request.
  Corrected: the source's `Expires` is set on the copy.
- CopyObject with `If-None-Match: *` or `If-Match: <etag>` that fails (412) has already written
  the source's bytes over the destination's stored data: the destination keeps its old ETag,
  metadata and length but serves other bytes (a read breaks off short). S3 user guide,
  "How to prevent object overwrites with conditional writes" (conditional-writes): when the
  condition fails "the write fails" and the object is left as it was. Corrected: the
  destination's condition is checked before LocalStack starts the copy.
- UploadPartCopy copies a source stored with a customer-provided key (SSE-C) without the
  `x-amz-copy-source-server-side-encryption-customer-*` headers. S3 user guide, "Specifying
  server-side encryption with customer-provided keys (SSE-C)": a copy of such an object must
  carry its key; S3 answers 400 InvalidRequest without it (as LocalStack's own CopyObject does)
  and 403 AccessDenied with another key. Corrected: UploadPartCopy checks the source's key as
  LocalStack's CopyObject does.

What LocalStack gets wrong and is left alone (the tests and the engine cope):
- DeleteObject with `If-Match` answers 501 NotImplemented (LocalStack allows conditional
  deletes only on directory buckets); the engine falls back to a plain delete on 501.
- ListObjectsV2 drops non-ASCII keys at a page boundary with `encoding-type=url` (and answers
  500 without it); no test pages through such keys.

What departs from moto, not from S3 (the engine handles both):
- UploadPartCopy of a range beyond the current source's size answers 400 InvalidArgument
  ("Range specified is not valid for source object of size: N") before it looks at
  `x-amz-copy-source-if-match`, as S3 does; moto answers 412 for the ETag first.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def _environment(port: int, root: str) -> None:
    # Read by localstack.config at import: set before anything of LocalStack is imported.
    os.makedirs(root, exist_ok=True)
    os.environ.update(
        {
            # Host mode: otherwise it believes it runs in its container (/var/lib/localstack).
            "OVERRIDE_IN_DOCKER": "0",
            # The default gateway server binds 0.0.0.0 whatever it is told; hypercorn does not.
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "SERVICES": "s3",
            "EAGER_SERVICE_LOADING": "1",
            # No analytics, no certificate download, no DNS server: nothing leaves the machine.
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "FILESYSTEM_ROOT": root,
            "HOME": root,
        }
    )


def _storage(root: str) -> None:
    # Object data goes to a fixed /tmp/localstack-s3-storage otherwise, shared by every server.
    from localstack.services.s3 import provider as s3_provider

    s3_provider.DEFAULT_S3_TMP_DIR = os.path.join(root, "s3-storage")


def _exit_with_parent() -> None:
    """Stops the server once the process that started it is gone, so that a launcher killed
    before it could stop the server leaves none behind."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _correct() -> None:
    import functools

    from localstack.aws.api.s3 import AccessDenied, InvalidRequest, PreconditionFailed
    from localstack.services.s3 import provider as s3_provider
    from localstack.services.s3.provider import S3Provider
    from localstack.services.s3.utils import (
        extract_bucket_key_version_id_from_copy_source,
        get_unique_key_id,
    )

    original = S3Provider.copy_object

    # functools.wraps keeps the handler markers (`operation`, ...) LocalStack dispatches on.
    @functools.wraps(original)
    def copy_object(self, context, request):
        dest_bucket, dest_key = request["Bucket"], request["Key"]
        if_match, if_none_match = request.get("IfMatch"), request.get("IfNoneMatch")
        # The destination's condition first, before LocalStack's storage copy writes anything.
        # The combinations LocalStack refuses (501) are left to it.
        if bool(if_match) != bool(if_none_match) and if_match != "*":
            _, dest = self._get_cross_account_bucket(context, dest_bucket)
            if if_none_match == "*":
                if s3_provider.object_exists_for_precondition_write(dest, dest_key):
                    raise PreconditionFailed(
                        "At least one of the pre-conditions you specified did not hold",
                        Condition="If-None-Match",
                    )
            elif if_match:
                s3_provider.verify_object_equality_precondition_write(dest, dest_key, if_match)

        response = original(self, context, request)

        # With the source's metadata (COPY), its Expires too: LocalStack takes it from the
        # request, which has none.
        if request.get("MetadataDirective") != "REPLACE":
            src_bucket, src_key, src_version = extract_bucket_key_version_id_from_copy_source(
                request.get("CopySource")
            )
            _, src = self._get_cross_account_bucket(context, src_bucket)
            _, dest = self._get_cross_account_bucket(context, dest_bucket)
            source = src.get_object(key=src_key, version_id=src_version)
            copied = dest.get_object(key=dest_key, version_id=response.get("VersionId"))
            copied.expires = source.expires

        # Tags copied from the source's own region (LocalStack looks in the destination's).
        if request.get("TaggingDirective") != "REPLACE":
            src_bucket, src_key, src_version = extract_bucket_key_version_id_from_copy_source(
                request.get("CopySource")
            )
            src_store, src = self._get_cross_account_bucket(context, src_bucket)
            dest_store, dest = self._get_cross_account_bucket(context, dest_bucket)
            if src_store is not dest_store:
                source = src.get_object(key=src_key, version_id=src_version)
                tags = src_store.tags.get_tags(
                    get_unique_key_id(src_bucket, src_key, source.version_id)
                )
                dest_id = get_unique_key_id(dest_bucket, dest_key, response.get("VersionId"))
                dest_store.tags.delete_all_tags(dest_id)
                dest_store.tags.update_tags(dest_id, tags)
        return response

    S3Provider.copy_object = copy_object

    original_part_copy = S3Provider.upload_part_copy

    @functools.wraps(original_part_copy)
    def upload_part_copy(self, context, request):
        src_bucket, src_key, src_version = extract_bucket_key_version_id_from_copy_source(
            request.get("CopySource")
        )
        try:
            _, src = self._get_cross_account_bucket(context, src_bucket)
            source = src.get_object(key=src_key, version_id=src_version)
        except Exception:  # noqa: BLE001 a missing bucket or key: LocalStack's own answer
            source = None
        if source is not None and source.sse_key_hash:
            # The check (and answers) of LocalStack's CopyObject.
            given = request.get("CopySourceSSECustomerKeyMD5")
            if not given:
                raise InvalidRequest(
                    "The object was stored using a form of Server Side Encryption. "
                    "The correct parameters must be provided to retrieve the object."
                )
            if given != source.sse_key_hash:
                raise AccessDenied("Access Denied")
        return original_part_copy(self, context, request)

    S3Provider.upload_part_copy = upload_part_copy


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True, help="scratch folder (FILESYSTEM_ROOT, HOME)")
    parser.add_argument("--plain", action="store_true", help="LocalStack without corrections")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 13):
        # localstack-core 2026.3.0 imports `warnings.deprecated`, new in Python 3.13.
        sys.exit(f"localstack_s3.py: needs Python 3.13 or newer, not {sys.version.split()[0]}")
    root = os.path.abspath(args.root)
    _exit_with_parent()
    _environment(args.port, root)
    _storage(root)
    if not args.plain:
        _correct()
    from localstack.runtime.main import main as run

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
