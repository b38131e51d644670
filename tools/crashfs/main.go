// Command crashfs mounts a directory through FUSE and can make it lose, on
// command, what a machine crash loses: every byte written since the file's
// last fsync. The tests run servers on it to compare fsync policies under a
// power loss, which killing a process cannot show (the operating system
// keeps what a killed process wrote).
//
// Usage: crashfs MOUNTPOINT BACKING SHADOW, or crashfs probe (mounts and
// unmounts an empty one: whether this machine lets it run).
//
// Every operation goes to BACKING. SHADOW holds what is durable: a file's
// contents as of its last fsync (or fdatasync), and the directory tree as
// it is now (creating, renaming and removing count as durable at once, as a
// journaling file system makes them within seconds). SIGUSR2 makes all
// that was written durable, as the operating system's write-back of its
// page cache does within half a minute, and prints "written back". SIGUSR1
// is the crash:
// crashfs unmounts (the processes using it must be dead by then), makes
// BACKING what SHADOW holds, mounts again and prints "crashed". It prints
// "ready" once mounted and unmounts on SIGTERM or SIGINT, or when its
// standard input closes (the process that started it is gone). Root only
// (it mounts without fusermount).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

type crashfs struct {
	backing string
	shadow  string
	// Serialises the shadow's updates: an fsync's copy against a rename or a removal.
	mu sync.Mutex
}

// node is a loopback node that keeps the shadow up to date.
type node struct {
	fs.LoopbackNode
	c *crashfs
}

func (c *crashfs) newNode(root *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
	return &node{LoopbackNode: fs.LoopbackNode{RootData: root}, c: c}
}

// relative is the node's path below the mount point.
func (n *node) relative(name string) string {
	return filepath.Join(n.Path(n.Root()), name)
}

var (
	_ fs.NodeFsyncer  = (*node)(nil)
	_ fs.NodeCreater  = (*node)(nil)
	_ fs.NodeMkdirer  = (*node)(nil)
	_ fs.NodeUnlinker = (*node)(nil)
	_ fs.NodeRmdirer  = (*node)(nil)
	_ fs.NodeRenamer  = (*node)(nil)
)

// Fsync makes the file's contents durable: the shadow gets a copy of them.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	relative := n.Path(n.Root())
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	info, err := os.Stat(filepath.Join(n.c.backing, relative))
	if os.IsNotExist(err) {
		// Removed while open: nothing of it survives a crash.
		return 0
	} else if err != nil {
		return fs.ToErrno(err)
	}
	if info.IsDir() {
		return 0
	}
	return fs.ToErrno(copyFile(filepath.Join(n.c.backing, relative), filepath.Join(n.c.shadow, relative)))
}

// Create makes the new, empty file durable at once (its contents only at its fsync).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno == 0 {
		n.c.mu.Lock()
		defer n.c.mu.Unlock()
		if err := touch(filepath.Join(n.c.shadow, n.relative(name))); err != nil {
			return nil, nil, 0, fs.ToErrno(err)
		}
	}
	return inode, fh, fuseFlags, errno
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	inode, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		n.c.mu.Lock()
		defer n.c.mu.Unlock()
		if err := os.MkdirAll(filepath.Join(n.c.shadow, n.relative(name)), 0o755); err != nil {
			return nil, fs.ToErrno(err)
		}
	}
	return inode, errno
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 {
		n.c.mu.Lock()
		defer n.c.mu.Unlock()
		if err := os.Remove(filepath.Join(n.c.shadow, n.relative(name))); err != nil && !os.IsNotExist(err) {
			return fs.ToErrno(err)
		}
	}
	return errno
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	errno := n.LoopbackNode.Rmdir(ctx, name)
	if errno == 0 {
		n.c.mu.Lock()
		defer n.c.mu.Unlock()
		if err := os.RemoveAll(filepath.Join(n.c.shadow, n.relative(name))); err != nil {
			return fs.ToErrno(err)
		}
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno != 0 {
		return errno
	}
	parent, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	from := filepath.Join(n.c.shadow, n.relative(name))
	to := filepath.Join(n.c.shadow, parent.relative(newName))
	if _, err := os.Lstat(from); os.IsNotExist(err) {
		// Made before crashfs knew of it: the name is durable, its contents are not.
		return fs.ToErrno(touch(to))
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return fs.ToErrno(err)
	}
	return fs.ToErrno(os.Rename(from, to))
}

// touch makes an empty file at path (and its directories), keeping one that exists.
func touch(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return file.Close()
}

// copyFile replaces to's contents with from's, through a temporary file and a rename.
func copyFile(from, to string) error {
	source, err := os.Open(from)
	if err != nil {
		return err
	}
	defer source.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	temporary := to + ".crashfs-copy"
	target, err := os.OpenFile(temporary, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(target, source); err != nil {
		target.Close()
		return err
	}
	if err := target.Close(); err != nil {
		return err
	}
	return os.Rename(temporary, to)
}

// writeBack makes everything written so far durable, as an operating
// system's write-back of its page cache does within half a minute.
func (c *crashfs) writeBack() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return filepath.Walk(c.backing, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		relative, err := filepath.Rel(c.backing, path)
		if err != nil || relative == "." {
			return err
		}
		target := filepath.Join(c.shadow, relative)
		if info.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		return copyFile(path, target)
	})
}

// restore makes the backing directory what the shadow holds: the crash.
func (c *crashfs) restore() error {
	entries, err := os.ReadDir(c.backing)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		if err := os.RemoveAll(filepath.Join(c.backing, entry.Name())); err != nil {
			return err
		}
	}
	return filepath.Walk(c.shadow, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		relative, err := filepath.Rel(c.shadow, path)
		if err != nil || relative == "." {
			return err
		}
		target := filepath.Join(c.backing, relative)
		if info.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		return copyFile(path, target)
	})
}

func (c *crashfs) mount(mountpoint string) (*fuse.Server, error) {
	root := &fs.LoopbackRoot{Path: c.backing}
	root.NewNode = c.newNode
	var st syscall.Stat_t
	if err := syscall.Stat(c.backing, &st); err != nil {
		return nil, err
	}
	root.RootNode = c.newNode(root, nil, "", &st)
	return fs.Mount(mountpoint, root.RootNode, &fs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "crashfs", Name: "crashfs"},
	})
}

// unmount unmounts, waiting for the processes that used the file system to be gone.
func unmount(server *fuse.Server) error {
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		if err = server.Unmount(); err == nil {
			server.Wait()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// probe mounts an empty crashfs and unmounts it: whether this machine lets crashfs run.
func probe() error {
	dir, err := os.MkdirTemp("", "crashfs-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c := &crashfs{backing: filepath.Join(dir, "backing"), shadow: filepath.Join(dir, "shadow")}
	for _, sub := range []string{"mount", "backing", "shadow"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	server, err := c.mount(filepath.Join(dir, "mount"))
	if err != nil {
		return err
	}
	return unmount(server)
}

func run() error {
	if len(os.Args) == 2 && os.Args[1] == "probe" {
		return probe()
	}
	if len(os.Args) != 4 {
		return fmt.Errorf("usage: crashfs MOUNTPOINT BACKING SHADOW, or crashfs probe")
	}
	mountpoint, backing, shadow := os.Args[1], os.Args[2], os.Args[3]
	for _, dir := range []string{mountpoint, backing, shadow} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	c := &crashfs{backing: backing, shadow: shadow}
	// Start from what is durable: the backing directory as the shadow has it.
	if err := c.restore(); err != nil {
		return fmt.Errorf("restoring %s: %w", backing, err)
	}
	server, err := c.mount(mountpoint)
	if err != nil {
		return fmt.Errorf("mounting %s: %w", mountpoint, err)
	}
	fmt.Println("ready")
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	// Standard input closing means the process that started crashfs is gone (even killed): unmount and end.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		signals <- syscall.SIGTERM
	}()
	for received := range signals {
		if received == syscall.SIGUSR2 {
			if err := c.writeBack(); err != nil {
				return fmt.Errorf("writing back %s: %w", backing, err)
			}
			fmt.Println("written back")
			continue
		}
		if err := unmount(server); err != nil {
			return fmt.Errorf("unmounting %s: %w", mountpoint, err)
		}
		if received != syscall.SIGUSR1 {
			return nil
		}
		if err := c.restore(); err != nil {
			return fmt.Errorf("restoring %s: %w", backing, err)
		}
		if server, err = c.mount(mountpoint); err != nil {
			return fmt.Errorf("mounting %s: %w", mountpoint, err)
		}
		fmt.Println("crashed")
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crashfs:", err)
		os.Exit(1)
	}
}
