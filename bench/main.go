// Command bench measures sharedstate against the alternatives a user would
// weigh it against, in one run on one machine: Redis through go-redis and
// rueidis, a bare Unix-socket ping-pong, a mutex-guarded Go map, and the
// Python multiprocessing manager recipe; and the library's Redis engine on
// one server, a Redis Cluster and a replicated primary. It prints a table
// per workload with absolute figures, ratios and the targets of issue 4,
// and writes the figures as JSON and the throughput ratios as an SVG chart.
//
// Run it from this directory; it needs redis-server and redis-cli, python3
// and, for the HTTP workload, wrk installed (apt-get install -y
// redis-server redis-tools python3 wrk):
//
//	go run . -json results.json -svg results.svg
//	go run . -only 1,4 -duration 1s    # a quick look
//
// Every measurement runs in child processes: the binary re-executes itself
// as workers, so that each op crosses a process boundary as in production.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the run's settings, from the flags.
type config struct {
	procs      int
	goroutines []int
	duration   time.Duration
	warmup     time.Duration
	kills      int
	bigKeys    int
	hugeKeys   int
	only       []int
	jsonPath   string
	svgPath    string
	profileDir string
}

func main() {
	if os.Getenv(envRole) != "" {
		if err := workerMain(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "bench worker %d: %v\n", os.Getpid(), err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.IntVar(&cfg.procs, "p", 4, "worker `processes` per cell")
	gs := flag.String("g", "1,32", "goroutines per process: a comma-separated `list`")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "measured time per cell")
	flag.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "warm-up before each cell's measured time")
	flag.IntVar(&cfg.kills, "kills", 20, "owner kills per key count in the takeover workload")
	flag.IntVar(&cfg.bigKeys, "bigkeys", 1_000_000, "keys of the memory workload and the large takeover")
	flag.IntVar(&cfg.hugeKeys, "hugekeys", 5_000_000, "keys of the largest takeover (0: none)")
	only := flag.String("only", "", "workloads to run, e.g. \"1,3\" (default all: 1-12)")
	flag.StringVar(&cfg.jsonPath, "json", "results.json", "write all figures as JSON to `file` (\"\" for none)")
	flag.StringVar(&cfg.svgPath, "svg", "results.svg", "write the chart of ratios to Redis to `file` (\"\" for none)")
	flag.StringVar(&cfg.profileDir, "cpuprofile", "", "write a CPU profile of every worker process into `dir`")
	flag.Parse()

	var err error
	if cfg.goroutines, err = parseInts(*gs); err != nil || len(cfg.goroutines) == 0 {
		fatalf("-g %q: want a list of goroutine counts like 1,32", *gs)
	}
	if *only == "" {
		cfg.only = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	} else if cfg.only, err = parseInts(*only); err != nil {
		fatalf("-only %q: want workload numbers like 1,3", *only)
	}
	if cfg.procs < 2 {
		fatalf("-p %d: at least 2 processes, an owner and a proxy", cfg.procs)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// run runs the selected workloads, printing each table as it completes.
func run(ctx context.Context, cfg config) error {
	began := time.Now()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := findRedis(); err != nil {
		return err
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	// Short, so that socket paths fit in sun_path.
	dir, err := os.MkdirTemp("", "ssb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	b := &bench{cfg: cfg, exe: exe, dir: dir}
	redisDir, err := b.fresh("redis")
	if err != nil {
		return err
	}
	if b.redis, err = startRedis(ctx, redisDir, ""); err != nil {
		return err
	}
	defer b.redis.Stop()

	m := describeMachine()
	fmt.Printf("sharedstate benchmark: %d processes, G=%v, %v per cell after %v warm-up\n", cfg.procs, cfg.goroutines, cfg.duration, cfg.warmup)
	fmt.Printf("machine: %d CPUs, %s, Linux %s, %s, %s\n", m.CPUs, m.CPU, m.Kernel, m.Go, m.Redis)

	workloads := map[int]func(context.Context, *section) error{
		1:  b.counterAdd,
		2:  b.mapLoadStore,
		3:  b.proxyLatency,
		4:  b.ownerLocal,
		5:  b.pythonRecipe,
		6:  b.takeovers,
		7:  b.memory,
		8:  b.durabilityLevels,
		9:  b.hotKeyWorkload,
		10: b.httpIncrement,
		11: b.redisEngine,
		12: b.caches,
	}
	var sections []section
	var failed []string
	for _, id := range cfg.only {
		fn, ok := workloads[id]
		if !ok {
			return fmt.Errorf("no workload %d: they are 1 to 12", id)
		}
		s := section{ID: id}
		if err := fn(ctx, &s); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.Error = err.Error()
			failed = append(failed, strconv.Itoa(id))
		}
		printSection(os.Stdout, s)
		sections = append(sections, s)
	}
	printSummary(sections)

	if cfg.jsonPath != "" {
		r := results{
			Command: strings.Join(os.Args, " "),
			Machine: m,
			Config: runConfig{
				Processes: cfg.procs, Goroutines: cfg.goroutines, Duration: cfg.duration.String(),
				Warmup: cfg.warmup.String(), Kills: cfg.kills, BigKeys: cfg.bigKeys, Workloads: cfg.only,
				ChartBars: b.bars, Seconds: time.Since(began).Seconds(), CPUProfile: cfg.profileDir,
			},
			Workloads: sections,
		}
		if err := writeJSON(cfg.jsonPath, r); err != nil {
			return err
		}
	}
	if cfg.svgPath != "" && len(b.bars) > 0 {
		if err := writeChart(cfg.svgPath, b.bars); err != nil {
			return err
		}
	}
	fmt.Printf("\ntook %v\n", time.Since(began).Round(time.Second))
	if len(failed) > 0 {
		return fmt.Errorf("workloads %s failed; see above", strings.Join(failed, ", "))
	}
	return nil
}

// printSummary lists every target with its outcome.
func printSummary(sections []section) {
	fmt.Printf("\n== Targets\n")
	for _, s := range sections {
		for _, r := range s.Rows {
			if r.Pass == nil {
				continue
			}
			result, got := "MISS", formatValue(r.Value, r.Unit)
			if *r.Pass {
				result = "PASS"
			}
			if r.Ratio > 0 && !strings.HasSuffix(r.Target, r.Unit) {
				got = fmt.Sprintf("%.2fx %s", r.Ratio, r.Peer)
			}
			fmt.Printf("   %s  %d. %s: %s (target %s)\n", result, s.ID, r.Name, got, r.Target)
		}
	}
}

// machine describes where the run happened.
type machine struct {
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Redis  string `json:"redis"`
	Python string `json:"python"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), CPU: "unknown", Go: runtime.Version(), Redis: redisVersion()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("python3", "--version").Output(); err == nil {
		m.Python = strings.TrimSpace(string(out))
	}
	return m
}
