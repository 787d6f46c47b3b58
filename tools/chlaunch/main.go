//go:build linux

// Command chlaunch runs a real ClickHouse server for the integration tests
// out of libchdb.so, the embedded ClickHouse that the npm package
// @chdb/lib-linux-x64-gnu ships.
//
// It exists because the machines the tests run on have no internet but the
// Go module proxy, Debian packages and the npm registry, and Debian's
// clickhouse is far too old. libchdb is clickhouse-local as a library:
// chdb_query_cmdline takes clickhouse-local's command line, and a
// clickhouse-local started with --tcp_port/--http_port and told to
// SYSTEM START LISTEN serves the native and HTTP protocols for as long as
// its query runs. So chlaunch dlopen()s the library and runs a query that
// starts the listeners and then sleeps forever (one wakeup every 3 s, no
// measurable CPU). It is killed with SIGTERM or SIGINT and then exits at once.
//
// scripts/clickhouse.sh builds and starts it; it is not part of sessionmon.
package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// chdb_result is opaque; see chdb.h of chdb-io/chdb.
typedef struct chdb_result chdb_result;
typedef chdb_result *(*query_cmdline_fn)(int argc, char **argv);
typedef const char *(*result_error_fn)(chdb_result *);

static void *chl_lib;

// chl_open loads the library; it returns NULL or dlerror()'s message.
static const char *chl_open(const char *path) {
	chl_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	return chl_lib ? NULL : dlerror();
}

// chl_run calls chdb_query_cmdline. It returns NULL when the query ended
// without error, else an error message (which is never freed: the process
// is about to exit).
static const char *chl_run(int argc, char **argv) {
	query_cmdline_fn run = (query_cmdline_fn)dlsym(chl_lib, "chdb_query_cmdline");
	result_error_fn errof = (result_error_fn)dlsym(chl_lib, "chdb_result_error");
	if (!run || !errof)
		return "libchdb has no chdb_query_cmdline or chdb_result_error";
	chdb_result *res = run(argc, argv);
	if (!res)
		return "chdb_query_cmdline returned no result";
	return errof(res);
}
*/
import "C"

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"unsafe"
)

// serveQuery starts the listeners and then never ends: system.numbers is
// endless, one row per block, and each block sleeps 3 s (the most sleep
// allows without raising function_sleep_max_microseconds_per_block);
// WHERE drops every row, so nothing is ever output or buffered.
const serveQuery = "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
	"SELECT number FROM system.numbers WHERE sleepEachRow(3) " +
	"SETTINGS max_block_size = 1, max_threads = 1, max_execution_time = 0 FORMAT Null"

func main() {
	lib := flag.String("lib", "", "path of libchdb.so (required)")
	path := flag.String("path", "", "data directory (required)")
	tcpPort := flag.Int("tcp-port", 9000, "native protocol port")
	httpPort := flag.Int("http-port", 8123, "HTTP port")
	listen := flag.String("listen", "127.0.0.1", "address to listen on")
	flag.Parse()
	if *lib == "" || *path == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	// The query only ends on an error, so stopping means exiting: os.Exit
	// leaves at once, without running libchdb's atexit handlers and static
	// destructors while its threads are still busy.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "chlaunch: %v, exiting\n", s)
		os.Exit(0)
	}()

	clib := C.CString(*lib)
	if msg := C.chl_open(clib); msg != nil {
		fatalf("dlopen %s: %s", *lib, C.GoString(msg))
	}

	args := []string{
		"clickhouse",
		"--path=" + *path,
		"--listen_host=" + *listen,
		"--tcp_port=" + strconv.Itoa(*tcpPort),
		"--http_port=" + strconv.Itoa(*httpPort),
		"--multiquery",
		"--query", serveQuery,
		// Server settings follow "--". The memory worker, which polls the
		// allocator's statistics, is the one thread that wakes up often
		// (every 50-100 ms); a test server does not need that precision.
		"--", "--memory_worker_period_ms=1000",
	}
	argv := make([]*C.char, len(args)+1) // NULL-terminated, like main's
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	cargv := (**C.char)(C.malloc(C.size_t(len(argv)) * C.size_t(unsafe.Sizeof(argv[0]))))
	copy(unsafe.Slice(cargv, len(argv)), argv)

	fmt.Fprintf(os.Stderr, "chlaunch: serving %s on %s, tcp %d, http %d\n", *path, *listen, *tcpPort, *httpPort)
	if msg := C.chl_run(C.int(len(args)), cargv); msg != nil && C.GoString(msg) != "" {
		fatalf("clickhouse: %s", C.GoString(msg))
	}
	fatalf("clickhouse: the serving query ended (its error, if any, is above)")
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chlaunch: "+format+"\n", args...)
	os.Exit(1)
}
