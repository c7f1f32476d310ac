package sharedstate

import (
	"context"
	"fmt"

	"github.com/sharedstate/sharedstate/internal/store"
)

// RepairReport says what Repair did.
type RepairReport struct {
	// Records is how many journal records were kept, on top of the
	// snapshot.
	Records int
	// SetAside lists the files moved aside, under new names in the same
	// directory, with what could not be kept.
	SetAside []string
	// Problem is what Repair found wrong: the error Open reports. It is
	// empty, and Repair changes nothing, if nothing was.
	Problem string
}

// Repair makes the state called name openable again after Open fails with
// ErrDamaged: a journal damaged in the middle, missing, or not belonging
// with the snapshot. It keeps everything that reads back whole (the
// snapshot, and the journal's records up to the damage), moves the
// journal aside (to name.journal.damaged-TIME), and writes a new snapshot
// and journal from what it kept. It changes nothing if nothing is wrong,
// and refuses while a process uses the state. A damaged snapshot cannot be
// repaired: remove the state's files to start over.
//
// Options are those of Open; WithDir must name the same directory.
func Repair(ctx context.Context, name string, opts ...Option) (RepairReport, error) {
	var report RepairReport
	if err := checkName(name); err != nil {
		return report, err
	}
	cfg := newConfig(opts)
	dir, err := openStateDir(cfg)
	if err != nil {
		return report, err
	}
	defer dir.Close()
	release, err := claimIdle(dir, name, "repair")
	if err != nil {
		return report, err
	}
	defer release()
	if err := ctx.Err(); err != nil {
		return report, err
	}

	if report.Problem, report.Records, report.SetAside, err = store.Repair(dir, name); err != nil || report.Problem == "" {
		if err != nil {
			err = fmt.Errorf("sharedstate: repair %q: %w", name, err)
		}
		return report, err
	}
	cfg.logger.Warn("sharedstate: repaired a state", "state", name, "problem", report.Problem,
		"records kept", report.Records, "set aside", report.SetAside)
	return report, nil
}
