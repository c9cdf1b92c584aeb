//! The guest: which volume is the root, what OS it is, what boots it.
//!
//! Reads guest filesystems (ext2/3/4 through `ext4-view`, FAT through
//! `fatfs`) via the block layer only. Guest data is hostile: sizes are checked
//! before anything is read into memory, symlinks are resolved inside the
//! guest, and every identifier in the guest's fstab is resolved against the
//! volumes of *this* disk, never the host's devices.
