# dynamo-snapshot tasks. `./hack/just --list` explains each; `./hack/just` bootstraps the Python
# environment (and this very `just`) on a fresh machine first.

set shell := ["bash", "-euo", "pipefail", "-c"]

import? 'hack/recipes/node.just'
import? 'hack/recipes/api.just'
import? 'hack/recipes/bench.just'

# List the recipes
default:
    @just --list
