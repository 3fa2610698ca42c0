"""The export of a batch of products, one stage a module; the row flows one way through them:

``read`` (a batch's pages, its staged bulk result, or a packed shop's one request: the shops' parts) ->
``enrich`` (each variant's metrics for the day, its images backed up) -> ``render`` (CSV and JSON) ->
``publish`` (what changed uploaded, Parquet parts, every row in one transaction) -> a result per shop.

``run.export`` strings them together and owns the phase clock. A batch, a packed unit of small shops and a
shop that left its unit differ only in how they read. Only ``read`` talks to Shopify; only ``publish`` writes
the day's outputs (``enrich`` stores image copies, which are backups, not the day's files).
"""
