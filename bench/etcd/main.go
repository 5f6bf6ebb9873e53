// SPDX-License-Identifier: Apache-2.0
// sqlock_etcd_bench: etcd's own lock recipe (clientv3/concurrency.Mutex) measured the way
// sqlock_bench measures sqlock, so that bench/run can show it as a peer in the same run.
// sqlock_bench starts it once per measured run and reads the one JSON line it prints.
//
// Built by bench/run (not by CMake) with Debian's Go and Debian's etcd client source
// (golang-etcd-server-dev, under /usr/share/gocode), in GOPATH mode, nothing downloaded:
//
//	GO111MODULE=off GOPROXY=off GOPATH=$PWD/build-bench/go-path:/usr/share/gocode \
//	  GOCACHE=$PWD/build-bench/go-cache go build -o build-bench/sqlock_etcd_bench ./bench/etcd
//
// Modes:
//
//	-mode version      one line: the server's version (Status RPC) and this client's Go version
//	-mode uncontended  -clients N: each its own clientv3.Client and concurrency.Session (lease
//	                   with -ttl), cycling Lock/Unlock over its own 32 keys for -duration-ms;
//	                   cycles/s and cycle latency p50/p99
//	-mode contended    -clients N on ONE key, each its own client and session: Lock, hold
//	                   -hold-ms, Unlock, repeat; grants/s and wait-for-grant p50/p99. Holders
//	                   count themselves in after Lock returns and out before Unlock: two at once
//	                   is a broken mutex, reported (max_holders) and the exit status is 3.
//
// Timing as in sqlock_bench: clients and sessions are set up before a start barrier; the clock
// runs from the barrier to the last goroutine's exit after the stop signal; latencies are
// time.Now() (monotonic) around the calls in the calling goroutine, percentiles by nearest rank
// over every call of the run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

const keysPerClient = 32

type result struct {
	Mode        string  `json:"mode"`
	Clients     int     `json:"clients"`
	HoldMs      int     `json:"hold_ms"`
	Seconds     float64 `json:"seconds"`
	Ops         int     `json:"ops"`
	OpsPerS     float64 `json:"ops_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	CPUSeconds  float64 `json:"cpu_s"`
	CtxSwitches float64 `json:"ctx_switches"`
	MaxHolders  int64   `json:"max_holders"`
	Overlaps    int64   `json:"overlaps"`
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "sqlock_etcd_bench: "+format+"\n", a...)
	os.Exit(1)
}

// percentile by nearest rank, as bench/util.cpp computes it; sorts v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	rank := int(math.Ceil(p / 100 * float64(len(v))))
	if rank > 0 {
		rank--
	}
	if rank > len(v)-1 {
		rank = len(v) - 1
	}
	return v[rank]
}

func rusage() (cpu, switches float64) {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(u.Utime) + tv(u.Stime), float64(u.Nvcsw + u.Nivcsw)
}

type peer struct {
	client  *clientv3.Client
	session *concurrency.Session
}

// newClient connects to the one endpoint. The client logs errors only: the waits cancelled at
// the end of a run would each log a warning ("retrying of unary invoker failed").
func newClient(endpoint string) *clientv3.Client {
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		LogConfig:   &lcfg,
	})
	if err != nil {
		fail("connect %s: %v", endpoint, err)
	}
	return c
}

func connect(endpoint string, ttl int) peer {
	c := newClient(endpoint)
	s, err := concurrency.NewSession(c, concurrency.WithTTL(ttl))
	if err != nil {
		fail("session: %v", err)
	}
	return peer{c, s}
}

func (p peer) close() {
	p.session.Close() // revokes the lease: whatever key it still has goes with it
	p.client.Close()
}

func main() {
	endpoint := flag.String("endpoint", "", "etcd client address, host:port")
	mode := flag.String("mode", "", "version, uncontended or contended")
	clients := flag.Int("clients", 1, "clients (goroutines), each its own client and session")
	holdMs := flag.Int("hold-ms", 0, "contended: how long a holder keeps the lock")
	durationMs := flag.Int("duration-ms", 3000, "one measured run")
	ttl := flag.Int("ttl", 30, "session lease ttl, seconds")
	prefix := flag.String("prefix", "/sqlock-bench", "key prefix; the run adds a unique part")
	flag.Parse()
	if *endpoint == "" || *clients < 1 || *durationMs < 1 {
		flag.Usage()
		os.Exit(64)
	}

	if *mode == "version" {
		c := newClient(*endpoint)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.Status(ctx, *endpoint)
		if err != nil {
			fail("status: %v", err)
		}
		out, _ := json.Marshal(map[string]string{"server": st.Version, "go": runtime.Version()})
		fmt.Println(string(out))
		return
	}
	if *mode != "uncontended" && *mode != "contended" {
		flag.Usage()
		os.Exit(64)
	}

	// A fresh key space per run, so that nothing left by an earlier run is in the way.
	run := fmt.Sprintf("%s/%d-%d", *prefix, os.Getpid(), time.Now().UnixNano())
	peers := make([]peer, *clients)
	for i := range peers {
		peers[i] = connect(*endpoint, *ttl)
	}
	defer func() {
		for _, p := range peers {
			p.close()
		}
	}()

	var (
		holders, maxHolders, overlaps int64
		stop                          int32
		errOnce                       sync.Once
		firstErr                      error
		wg, ready                     sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := make(chan struct{})
	lat := make([][]float64, *clients)
	setErr := func(err error) {
		errOnce.Do(func() { firstErr = err })
		atomic.StoreInt32(&stop, 1)
		cancel()
	}
	hold := time.Duration(*holdMs) * time.Millisecond

	for i := range peers {
		wg.Add(1)
		ready.Add(1)
		go func(i int) {
			defer wg.Done()
			s := peers[i].session
			l := make([]float64, 0, 1<<14)
			defer func() { lat[i] = l }()
			ready.Done()
			<-start
			for n := 0; atomic.LoadInt32(&stop) == 0; n++ {
				var key string
				if *mode == "uncontended" {
					key = fmt.Sprintf("%s/%d/%d", run, i, n%keysPerClient)
				} else {
					key = run + "/hot"
				}
				m := concurrency.NewMutex(s, key)
				t0 := time.Now()
				if err := m.Lock(ctx); err != nil {
					if ctx.Err() != nil && atomic.LoadInt32(&stop) != 0 {
						return // stopped while waiting: not a grant
					}
					setErr(fmt.Errorf("lock: %w", err))
					return
				}
				granted := time.Now()
				if *mode == "contended" {
					h := atomic.AddInt64(&holders, 1)
					for {
						old := atomic.LoadInt64(&maxHolders)
						if h <= old || atomic.CompareAndSwapInt64(&maxHolders, old, h) {
							break
						}
					}
					if h > 1 {
						atomic.AddInt64(&overlaps, 1)
					}
					if hold > 0 {
						time.Sleep(hold)
					}
					atomic.AddInt64(&holders, -1)
					l = append(l, float64(granted.Sub(t0).Nanoseconds())/1e6)
				}
				// Unlock with a context of its own: a holder that saw the stop signal still
				// releases (the others' cancelled waits delete their own keys).
				uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := m.Unlock(uctx)
				ucancel()
				if err != nil {
					setErr(fmt.Errorf("unlock: %w", err))
					return
				}
				if *mode == "uncontended" {
					l = append(l, float64(time.Since(t0).Nanoseconds())/1e6)
				}
			}
		}(i)
	}
	ready.Wait()
	cpu0, cs0 := rusage()
	t0 := time.Now()
	close(start)
	time.Sleep(time.Duration(*durationMs) * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	cancel() // ends the waits in Lock
	wg.Wait()
	seconds := time.Since(t0).Seconds()
	cpu1, cs1 := rusage()
	if firstErr != nil {
		fail("%v", firstErr)
	}

	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	r := result{
		Mode: *mode, Clients: *clients, HoldMs: *holdMs, Seconds: seconds, Ops: len(all),
		OpsPerS: float64(len(all)) / seconds, CPUSeconds: cpu1 - cpu0, CtxSwitches: cs1 - cs0,
		MaxHolders: atomic.LoadInt64(&maxHolders), Overlaps: atomic.LoadInt64(&overlaps),
	}
	r.P50Ms = percentile(all, 50)
	r.P99Ms = percentile(all, 99)
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if r.Overlaps > 0 {
		fmt.Fprintf(os.Stderr, "sqlock_etcd_bench: SAFETY VIOLATION: %d grants while another "+
			"client held the lock (at most %d holders at once)\n", r.Overlaps, r.MaxHolders)
		os.Exit(3)
	}
}
