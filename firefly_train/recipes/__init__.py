"""One module per `firefly-train` subcommand: thin glue between the CLI and the components."""
