//! A libext2fs `io_manager` whose channels read and write through a
//! [`rescue_io::BlockWrite`] device, so that libext2fs never opens a host
//! file itself.
//!
//! `ext2fs_open2` only knows a device *name*; it passes it to our `open`
//! callback. [`Registration`] maps a unique name to the device's
//! [`ChannelState`] in a thread-local table for the duration of the open
//! call; the channel then owns a reference to the state. Writes go straight
//! to the device (no cache in the channel). A failing device call stores
//! its rich [`rescue_io::Error`] in the state and returns a plain errcode to
//! libext2fs; the safe layer takes it back out for the message.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_ulong, c_ulonglong, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rescue_io::{BlockWrite, ErrorKind as IoKind};

use crate::sys;

/// `errno` value libext2fs shows as "Input/output error".
const EIO: sys::errcode_t = 5;

/// Largest single transfer we accept from libext2fs (it never asks for more
/// than a few blocks at a time; this only bounds a bogus count).
const MAX_TRANSFER: u64 = 1 << 30;

/// What a channel knows about its device. Shared (`Rc`) between the open
/// channel inside libext2fs and the safe [`crate::Fs`].
pub(crate) struct ChannelState {
    device: Arc<dyn BlockWrite>,
    /// The unique name handed to `ext2fs_open2` (kept alive for the
    /// channel's `name` field).
    name: CString,
    /// The manager table the channel points at; boxed so its address is
    /// stable for as long as any channel holds this state.
    manager: Box<sys::struct_io_manager>,
    last_error: RefCell<Option<rescue_io::Error>>,
    /// Byte counters libext2fs reads through `get_stats` (it updates
    /// `s_kbytes_written` from them).
    stats: UnsafeCell<sys::struct_io_stats>,
    wrote: Cell<bool>,
}

impl ChannelState {
    /// A state for `device` with a fresh unique name.
    pub(crate) fn new(device: Arc<dyn BlockWrite>) -> Rc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // No '?' (libext2fs would split io options off it) and no NUL.
        let name =
            CString::new(format!("rescue-ext2fs-{}-{n}", std::process::id())).unwrap_or_default();
        let manager = Box::new(sys::struct_io_manager {
            magic: sys::EXT2_ET_MAGIC_IO_MANAGER as sys::errcode_t,
            name: MANAGER_NAME.as_ptr(),
            open: Some(open_cb),
            close: Some(close_cb),
            set_blksize: Some(set_blksize_cb),
            read_blk: Some(read_blk_cb),
            write_blk: Some(write_blk_cb),
            flush: Some(flush_cb),
            write_byte: Some(write_byte_cb),
            set_option: Some(set_option_cb),
            get_stats: Some(get_stats_cb),
            read_blk64: Some(read_blk64_cb),
            write_blk64: Some(write_blk64_cb),
            discard: Some(discard_cb),
            cache_readahead: None,
            zeroout: Some(zeroout_cb),
            reserved: [0; 14],
        });
        Rc::new(ChannelState {
            device,
            name,
            manager,
            last_error: RefCell::new(None),
            stats: UnsafeCell::new(sys::struct_io_stats {
                num_fields: 2,
                reserved: 0,
                bytes_read: 0,
                bytes_written: 0,
            }),
            wrote: Cell::new(false),
        })
    }

    /// The device name to pass to `ext2fs_open2`.
    pub(crate) fn name(&self) -> &CStr {
        &self.name
    }

    /// The manager to pass to `ext2fs_open2`. libext2fs only reads it.
    pub(crate) fn manager_ptr(&self) -> sys::io_manager {
        &*self.manager as *const sys::struct_io_manager as sys::io_manager
    }

    /// The device, for flushing and for messages.
    pub(crate) fn device(&self) -> &Arc<dyn BlockWrite> {
        &self.device
    }

    /// Takes the device error stored by the last failing callback.
    pub(crate) fn take_error(&self) -> Option<rescue_io::Error> {
        self.last_error.borrow_mut().take()
    }

    /// True once anything was written to the device.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.get()
    }

    fn store(&self, err: rescue_io::Error) {
        *self.last_error.borrow_mut() = Some(err);
    }

    fn add_read(&self, n: u64) {
        // SAFETY: single-threaded (ChannelState is !Send/!Sync through Rc);
        // libext2fs only reads the counters between our callbacks, never
        // while this short write is in progress.
        unsafe { (*self.stats.get()).bytes_read += n };
    }

    fn add_written(&self, n: u64) {
        self.wrote.set(true);
        // SAFETY: as in `add_read`.
        unsafe { (*self.stats.get()).bytes_written += n };
    }
}

const MANAGER_NAME: &CStr = c"rescue-ext2fs block layer";

thread_local! {
    /// Devices waiting to be opened by name from inside `ext2fs_open2`.
    static PENDING: RefCell<HashMap<CString, Rc<ChannelState>>> = RefCell::new(HashMap::new());
}

/// Keeps a device openable by its name while alive (RAII).
pub(crate) struct Registration {
    name: CString,
}

impl Registration {
    pub(crate) fn new(state: &Rc<ChannelState>) -> Self {
        let name = state.name.clone();
        PENDING.with(|p| p.borrow_mut().insert(name.clone(), Rc::clone(state)));
        Registration { name }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // `try_with`: never panic in drop, even during thread teardown.
        let _ = PENDING.try_with(|p| p.borrow_mut().remove(&self.name));
    }
}

/// Runs a callback body, turning a panic (from a device implementation)
/// into an I/O error instead of unwinding into C.
fn guarded(state: Option<&ChannelState>, f: impl FnOnce() -> sys::errcode_t) -> sys::errcode_t {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(_) => {
            if let Some(state) = state {
                state.store(
                    rescue_io::Error::new(IoKind::Io, "accessing the device").with_detail(
                        "the device implementation panicked; this is a bug in rescue-disk",
                    ),
                );
            }
            EIO
        }
    }
}

/// The channel behind `channel`, if it is one of ours and still open.
///
/// # Safety
/// `channel` must be null or a channel created by [`open_cb`] that has not
/// been freed by [`close_cb`].
// SAFETY: (contract) see the Safety section above.
unsafe fn channel_parts<'a>(
    channel: sys::io_channel,
) -> Option<(&'a mut sys::struct_io_channel, &'a ChannelState)> {
    if channel.is_null() {
        return None;
    }
    // SAFETY: non-null and, per the contract, a live channel from open_cb.
    let chan = unsafe { &mut *channel };
    if chan.magic != sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t || chan.private_data.is_null()
    {
        return None;
    }
    // SAFETY: open_cb stored `Rc::into_raw` of a ChannelState here; the
    // reference count it holds keeps the state alive until close_cb.
    let state = unsafe { &*(chan.private_data as *const ChannelState) };
    Some((chan, state))
}

/// Byte offset and length of a block transfer, checked.
fn extent_of(block_size: c_int, block: u64, count: c_int) -> Option<(u64, usize)> {
    if block_size <= 0 {
        return None;
    }
    let bs = block_size as u64;
    let len = if count < 0 {
        u64::from(count.unsigned_abs())
    } else {
        (count as u64).checked_mul(bs)?
    };
    if len > MAX_TRANSFER {
        return None;
    }
    let offset = block.checked_mul(bs)?;
    offset.checked_add(len)?;
    Some((offset, usize::try_from(len).ok()?))
}

fn read_at(state: &ChannelState, offset: u64, dst: &mut [u8]) -> sys::errcode_t {
    match state.device.read_exact_at(offset, dst) {
        Ok(()) => {
            state.add_read(dst.len() as u64);
            0
        }
        Err(e) => {
            let code = if e.kind() == IoKind::Truncated {
                sys::EXT2_ET_SHORT_READ as sys::errcode_t
            } else {
                EIO
            };
            state.store(e);
            code
        }
    }
}

fn write_at(state: &ChannelState, offset: u64, src: &[u8]) -> sys::errcode_t {
    match state.device.write_all_at(offset, src) {
        Ok(()) => {
            state.add_written(src.len() as u64);
            0
        }
        Err(e) => {
            let code = if e.kind() == IoKind::Truncated {
                sys::EXT2_ET_SHORT_WRITE as sys::errcode_t
            } else {
                EIO
            };
            state.store(e);
            code
        }
    }
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn open_cb(
    name: *const c_char,
    _flags: c_int,
    ret: *mut sys::io_channel,
) -> sys::errcode_t {
    guarded(None, || {
        if name.is_null() || ret.is_null() {
            return sys::EXT2_ET_BAD_DEVICE_NAME as sys::errcode_t;
        }
        // SAFETY: libext2fs passes the NUL-terminated copy of the name we
        // gave to ext2fs_open2.
        let name = unsafe { CStr::from_ptr(name) };
        let Some(state) = PENDING.with(|p| p.borrow().get(name).cloned()) else {
            // Not one of our devices: never fall back to opening a host file.
            return sys::EXT2_ET_BAD_DEVICE_NAME as sys::errcode_t;
        };
        // SAFETY: struct_io_channel is a C struct of integers, raw pointers
        // and optional function pointers, for all of which zero is valid.
        let mut chan: Box<sys::struct_io_channel> = Box::new(unsafe { std::mem::zeroed() });
        chan.magic = sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
        chan.manager = state.manager_ptr();
        chan.name = state.name.as_ptr() as *mut c_char;
        chan.block_size = 1024;
        chan.refcount = 1;
        chan.private_data = Rc::into_raw(state) as *mut c_void;
        // SAFETY: `ret` is non-null and points to libext2fs' io_channel slot.
        unsafe { *ret = Box::into_raw(chan) };
        0
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn close_cb(channel: sys::io_channel) -> sys::errcode_t {
    guarded(None, || {
        // SAFETY: libext2fs closes only channels it opened through us.
        let Some((chan, _)) = (unsafe { channel_parts(channel) }) else {
            return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
        };
        chan.refcount -= 1;
        if chan.refcount > 0 {
            return 0;
        }
        let state = chan.private_data as *const ChannelState;
        chan.private_data = std::ptr::null_mut();
        chan.magic = 0;
        // SAFETY: the last reference: reclaim exactly what open_cb leaked
        // (the Box of the channel and one Rc count of the state). The
        // channel's `name` points into the state, which we drop after it.
        unsafe {
            drop(Box::from_raw(channel));
            drop(Rc::from_raw(state));
        }
        0
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn set_blksize_cb(channel: sys::io_channel, blksize: c_int) -> sys::errcode_t {
    guarded(None, || {
        // SAFETY: a live channel of ours (libext2fs contract).
        let Some((chan, _)) = (unsafe { channel_parts(channel) }) else {
            return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
        };
        if blksize <= 0 {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        chan.block_size = blksize;
        0
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn read_blk64_cb(
    channel: sys::io_channel,
    block: c_ulonglong,
    count: c_int,
    data: *mut c_void,
) -> sys::errcode_t {
    // SAFETY: a live channel of ours (libext2fs contract).
    let Some((chan, state)) = (unsafe { channel_parts(channel) }) else {
        return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
    };
    guarded(Some(state), || {
        let Some((offset, len)) = extent_of(chan.block_size, block, count) else {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        };
        if len == 0 {
            return 0;
        }
        if data.is_null() {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        // SAFETY: libext2fs passes a buffer of `count` blocks (or -count
        // bytes) at the channel's block size, which is exactly `len`.
        let dst = unsafe { std::slice::from_raw_parts_mut(data as *mut u8, len) };
        read_at(state, offset, dst)
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn read_blk_cb(
    channel: sys::io_channel,
    block: c_ulong,
    count: c_int,
    data: *mut c_void,
) -> sys::errcode_t {
    // SAFETY: same contract as read_blk64.
    unsafe { read_blk64_cb(channel, block as c_ulonglong, count, data) }
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn write_blk64_cb(
    channel: sys::io_channel,
    block: c_ulonglong,
    count: c_int,
    data: *const c_void,
) -> sys::errcode_t {
    // SAFETY: a live channel of ours (libext2fs contract).
    let Some((chan, state)) = (unsafe { channel_parts(channel) }) else {
        return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
    };
    guarded(Some(state), || {
        let Some((offset, len)) = extent_of(chan.block_size, block, count) else {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        };
        if len == 0 {
            return 0;
        }
        if data.is_null() {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        // SAFETY: libext2fs passes `count` blocks (or -count bytes) of data.
        let src = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
        write_at(state, offset, src)
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn write_blk_cb(
    channel: sys::io_channel,
    block: c_ulong,
    count: c_int,
    data: *const c_void,
) -> sys::errcode_t {
    // SAFETY: same contract as write_blk64.
    unsafe { write_blk64_cb(channel, block as c_ulonglong, count, data) }
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn write_byte_cb(
    channel: sys::io_channel,
    offset: c_ulong,
    count: c_int,
    data: *const c_void,
) -> sys::errcode_t {
    // SAFETY: a live channel of ours (libext2fs contract).
    let Some((_, state)) = (unsafe { channel_parts(channel) }) else {
        return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
    };
    guarded(Some(state), || {
        if count < 0 || u64::from(count.unsigned_abs()) > MAX_TRANSFER {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        if count == 0 {
            return 0;
        }
        if data.is_null() {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        // SAFETY: libext2fs passes `count` bytes of data.
        let src = unsafe { std::slice::from_raw_parts(data as *const u8, count as usize) };
        write_at(state, offset, src)
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn flush_cb(channel: sys::io_channel) -> sys::errcode_t {
    // SAFETY: a live channel of ours (libext2fs contract).
    let Some((_, state)) = (unsafe { channel_parts(channel) }) else {
        return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
    };
    guarded(Some(state), || match state.device.flush() {
        Ok(()) => 0,
        Err(e) => {
            state.store(e);
            EIO
        }
    })
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn set_option_cb(
    _channel: sys::io_channel,
    _option: *const c_char,
    _arg: *const c_char,
) -> sys::errcode_t {
    // We take no options (unix_io's cache and offset options make no sense
    // over a BlockWrite); libext2fs treats this like an unknown option.
    sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn get_stats_cb(
    channel: sys::io_channel,
    ret: *mut sys::io_stats,
) -> sys::errcode_t {
    // SAFETY: a live channel of ours (libext2fs contract).
    let Some((_, state)) = (unsafe { channel_parts(channel) }) else {
        return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
    };
    if !ret.is_null() {
        // SAFETY: `ret` points to libext2fs' io_stats slot; the counters
        // live as long as the state, which outlives the channel.
        unsafe { *ret = state.stats.get() };
    }
    0
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn discard_cb(
    _channel: sys::io_channel,
    _block: c_ulonglong,
    _count: c_ulonglong,
) -> sys::errcode_t {
    sys::EXT2_ET_UNIMPLEMENTED as sys::errcode_t
}

// SAFETY: only libext2fs calls this, through our io_manager table, with
// channels from `open_cb` and buffers of the sizes its arguments state.
unsafe extern "C" fn zeroout_cb(
    channel: sys::io_channel,
    block: c_ulonglong,
    count: c_ulonglong,
) -> sys::errcode_t {
    // SAFETY: a live channel of ours (libext2fs contract).
    let Some((chan, state)) = (unsafe { channel_parts(channel) }) else {
        return sys::EXT2_ET_MAGIC_IO_CHANNEL as sys::errcode_t;
    };
    guarded(Some(state), || {
        if chan.block_size <= 0 {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        let bs = chan.block_size as u64;
        let (Some(mut offset), Some(total)) = (block.checked_mul(bs), count.checked_mul(bs)) else {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        };
        let Some(end) = offset.checked_add(total) else {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        };
        if end > state.device.size_in_bytes() {
            return sys::EXT2_ET_INVALID_ARGUMENT as sys::errcode_t;
        }
        let zeros = vec![0u8; total.min(1 << 20) as usize];
        while offset < end {
            let n = (end - offset).min(zeros.len() as u64) as usize;
            let code = write_at(state, offset, &zeros[..n]);
            if code != 0 {
                return code;
            }
            offset += n as u64;
        }
        0
    })
}
