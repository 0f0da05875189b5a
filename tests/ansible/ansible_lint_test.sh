#!/usr/bin/env bash
# deploy:ansible-lint (issue 13): deploy/ansible passes ansible-lint (production profile) and
# ansible-playbook --syntax-check. Fails when either tool is missing.
set -euo pipefail
: "${REPO:?}"
for t in ansible-lint ansible-playbook; do
  command -v "$t" >/dev/null || { echo "FAIL: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
cd "$REPO/deploy/ansible"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# ansible-lint keeps a cache; not in the tree.
export ANSIBLE_HOME="$work" XDG_CACHE_HOME="$work" ANSIBLE_NOCOLOR=1 NO_COLOR=1
ansible-playbook -i inventory.lab.ini --syntax-check site.yml
ansible-lint --profile production --offline
echo PASS
