"""Mounts the ext4 data disk (/dev/vdb), reads the host's file, writes one back."""
import os
import sys

import guest

guest.mount("/dev/vdb", "/mnt/disk", "ext4")
print(open("/mnt/disk/from-host").read(), end="")
with open("/mnt/disk/from-guest", "w") as f:
    f.write("written in the guest\n")
    f.flush()
    os.fsync(f.fileno())
guest.umount("/mnt/disk")
print("unmounted")
sys.exit(0)
