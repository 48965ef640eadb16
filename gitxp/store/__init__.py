"""The store on its branch: format, Store and Record, the listing index, refs, queries, Parquet."""
