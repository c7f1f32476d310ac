package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	return string(b)
}

func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sharedstate.Open(ctx, "metrics-demo", sharedstate.WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Counter("requests").Add(ctx, 1)

	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, st, "127.0.0.1:0", ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}

	metrics := get(t, "http://"+addr+"/metrics")
	pid := regexp.MustCompile(`(?m)^sharedstate_owner_pid\{state="metrics-demo"\} (\d+)$`).FindStringSubmatch(metrics)
	if pid == nil || pid[1] != strconv.Itoa(os.Getpid()) {
		t.Errorf("no owner pid %d in:\n%s", os.Getpid(), metrics)
	}
	if !strings.Contains(metrics, `sharedstate_counters{state="metrics-demo"} 1`) ||
		!strings.Contains(metrics, "# TYPE sharedstate_operations_total counter") {
		t.Errorf("metrics:\n%s", metrics)
	}

	// What expvar serves for the variable main publishes.
	var stats struct{ OwnerPID, Counters int }
	if err := json.Unmarshal([]byte(statsVar(st).String()), &stats); err != nil {
		t.Fatal(err)
	}
	if stats.OwnerPID != os.Getpid() || stats.Counters != 1 {
		t.Errorf("expvar: %+v", stats)
	}
	if !strings.Contains(get(t, "http://"+addr+"/debug/vars"), `"memstats"`) {
		t.Error("/debug/vars does not serve expvar")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
