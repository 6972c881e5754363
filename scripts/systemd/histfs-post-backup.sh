#!/bin/sh
# Example post-backup hook ([hooks] after_success = "/usr/bin/histfs-post-backup.sh").
# histfs runs it after a backup that published a snapshot, with:
#   HISTFS_REPO HISTFS_HOST HISTFS_SNAPSHOT HISTFS_STATUS (success or warnings)
#   HISTFS_SNAPSHOT_PATH   the snapshot inside the mount, when `mountpoint` is set
# Its output goes to the backup's log; a non-zero exit makes the backup exit 1.
#
# Here: hold the new snapshot for the tape job, so prune keeps it until the
# tape software has copied it and its completion script has run
#   histfs release --repo "$HISTFS_REPO" --host "$HISTFS_HOST" "$SNAPSHOT" --reason tape
set -eu
histfs hold --repo "$HISTFS_REPO" --host "$HISTFS_HOST" "$HISTFS_SNAPSHOT" --reason tape
echo "held $HISTFS_HOST/$HISTFS_SNAPSHOT for the tape job (${HISTFS_SNAPSHOT_PATH:-not mounted})"
