"""Zenodo's record format: file entries read into what the download fetches."""

from __future__ import annotations

from trainables.data.download import parse_record


def test_parse_record_reads_zenodo_file_entries():
    entry = {
        "id": "b147e088",
        "key": "training_set.zip",
        "size": 12,
        "checksum": "md5:00EB8198B9A505B2B3A6DFC740382497",
        "links": {"self": "https://zenodo.org/api/records/1/files/a b.zip/content"},
    }
    (remote,) = parse_record({"files": [entry]}, "https://zenodo.org", "1").values()
    assert remote.md5 == "00eb8198b9a505b2b3a6dfc740382497"
    assert remote.url == "https://zenodo.org/api/records/1/files/a%20b.zip/content"
    no_link = {k: v for k, v in entry.items() if k != "links"}
    (remote,) = parse_record({"files": [no_link]}, "https://zenodo.org", "1").values()
    assert remote.url == "https://zenodo.org/api/records/1/files/training_set.zip/content"
