#!/usr/bin/env python3
"""The local S3 protocol server for tests and the demo: moto's server, made to honour
`x-amz-copy-source-if-match` on CopyObject and UploadPartCopy as S3 does (moto checks only
`x-amz-copy-source-if-none-match`). Without it, tests could not show that a copy is pinned to the
ETag the function read. Arguments are moto_server's (`-H 127.0.0.1 -p PORT`).
"""

import sys
from urllib.parse import parse_qs, unquote, urlparse

from moto.s3.exceptions import PreconditionFailed
from moto.s3.responses import S3Response
from moto.server import main


def _enforce_copy_source_if_match(handler):
    def checked(self):
        wanted = self.headers.get("x-amz-copy-source-if-match")
        source = self.headers.get("x-amz-copy-source")
        if wanted and source:
            if isinstance(source, bytes):
                source = source.decode("utf-8")
            parsed = urlparse(source)
            bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
            version = parse_qs(parsed.query).get("versionId", [None])[0]
            current = self.backend.get_object(bucket, key, version_id=version)
            if current is not None and wanted.strip('"') != current.etag.strip('"'):
                raise PreconditionFailed(failed_condition="x-amz-copy-source-If-Match")
        return handler(self)

    return checked


S3Response.copy_object = _enforce_copy_source_if_match(S3Response.copy_object)
S3Response.upload_part_copy = _enforce_copy_source_if_match(S3Response.upload_part_copy)

if __name__ == "__main__":
    main(sys.argv[1:])
