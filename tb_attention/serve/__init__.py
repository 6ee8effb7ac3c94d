"""The read side, inside TensorBoard: the entry point (`loader`, import-light), the routes (`plugin`,
`embedding_routes`), request parameters, caches and background layout jobs.

Reads only through TensorBoard's data provider. Imports `format/` and `analysis/`; never `write/`, `capture/` or
`integrations/`. Importing this package must stay cheap: TensorBoard imports the entry point at start-up."""
