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
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // a state of its own
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", ready) }()
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

	var vars struct {
		Sharedstate struct{ OwnerPID, Counters int }
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+addr+"/debug/vars")), &vars); err != nil {
		t.Fatal(err)
	}
	if vars.Sharedstate.OwnerPID != os.Getpid() || vars.Sharedstate.Counters != 1 {
		t.Errorf("expvar: %+v", vars.Sharedstate)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
