"""Writes pyarrow_small.parquet (and the same table with zstd, gzip and LZ4 compression as
pyarrow_small_<codec>.parquet, and pyarrow_bad_classlabel.parquet, whose second label id is
outside its ClassLabel names), the fixtures tests/readers_files.rs reads.

Laid out as a Hugging Face `datasets` split is: a string `text` column, an int64 `label`
(ClassLabel's storage) with the class names in the `huggingface` schema metadata, and some
extra columns. pyarrow's defaults otherwise (snappy, dictionary encoding); two row groups.

Run with: python3 -m venv /tmp/pa && /tmp/pa/bin/pip install pyarrow==26.0.1 &&
          /tmp/pa/bin/python make_pyarrow_small.py
"""

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

features = {
    "text": {"dtype": "string", "_type": "Value"},
    "label": {"names": ["ham", "spam"], "_type": "ClassLabel"},
    "subject": {"dtype": "string", "_type": "Value"},
    "score": {"dtype": "float64", "_type": "Value"},
    "tags": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
}
table = pa.table(
    {
        "text": ["Win a free cruise!!!", "Lunch at noon?\nSee you", "caf\u00e9 \u2615 r\u00e9sum\u00e9"],
        "label": pa.array([1, 0, None], type=pa.int64()),
        "subject": ["WIN", None, "unicode"],
        "score": [0.9, 0.1, 0.5],
        "tags": [["promo", "cruise"], [], ["x"]],
    }
).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
out = pathlib.Path(__file__).with_name("pyarrow_small.parquet")
pq.write_table(table, out, row_group_size=2)
print(out, pq.ParquetFile(out).metadata)
for codec in ["zstd", "gzip", "lz4"]:
    other = out.with_name(f"pyarrow_small_{codec}.parquet")
    pq.write_table(table, other, row_group_size=2, compression=codec)
    print(other, pq.ParquetFile(other).metadata.row_group(0).column(0).compression)
bad = pa.table({"text": ["fine", "broken"], "label": pa.array([0, 7], type=pa.int64())})
bad = bad.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": {
    "text": {"dtype": "string", "_type": "Value"},
    "label": {"names": ["ham", "spam"], "_type": "ClassLabel"},
}}})})
pq.write_table(bad, out.with_name("pyarrow_bad_classlabel.parquet"))
