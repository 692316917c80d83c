#!/bin/sh
# A DNS-01 hook as tlsd calls it: HOOK... present|cleanup FQDN VALUE. This one drives
# pebble-challtestsrv's management API (its first argument) and notes each call in the
# file named by its second.
set -eu
api=$1 notes=$2 action=$3 fqdn=$4 value=$5
case "$action" in
present) curl -fsS --max-time 5 -d "{\"host\":\"$fqdn\",\"value\":\"$value\"}" "http://$api/set-txt" ;;
cleanup) curl -fsS --max-time 5 -d "{\"host\":\"$fqdn\"}" "http://$api/clear-txt" ;;
*) echo "unknown action $action" >&2; exit 2 ;;
esac
echo "$action $fqdn" >>"$notes"
