#!/usr/bin/env bash
# Installs what plugdb's tests need on a fresh Debian machine with Go:
#   protoc (Debian's protobuf-compiler), to check the checked-in generated code;
#   ZooKeeper (Debian's zookeeper, which brings a JRE even with --no-install-recommends)
#   and Java, for the tests that run a real ZooKeeper (core/zkserver finds the jar
#   and the zkCli.sh client, which the ACL test runs, where this checks for them);
#   Chromium (Debian's chromium), for the test that renders `plugdb bench --report`
#   headless;
#   iproute2 (`ip`), for the test that runs a cluster on three hosts made of
#   network namespaces (internal/netns).
# Needs root for apt-get; elsewhere it says what to install and fails.
set -euo pipefail

need=()
command -v go >/dev/null || { echo "test-deps: Go is missing: install Go 1.26+ from https://go.dev/dl" >&2; exit 1; }
command -v protoc >/dev/null || need+=(protobuf-compiler)
{ [ -f /usr/share/java/zookeeper.jar ] && [ -x /usr/share/zookeeper/bin/zkCli.sh ]; } || need+=(zookeeper)
command -v java >/dev/null || [ -x /usr/bin/java ] || need+=(default-jre-headless)
command -v chromium >/dev/null || need+=(chromium)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "test-deps: missing packages: ${need[*]}; install them (Debian: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "test-deps: installing ${need[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
