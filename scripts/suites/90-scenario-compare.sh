#!/usr/bin/env bash
# Compares the client scenario's results across languages (test/scenario/README.md).
exec node scripts/scenario-compare.mjs "$1"
