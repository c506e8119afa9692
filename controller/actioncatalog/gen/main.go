// Command gen writes the first-party action descriptions the controller
// embeds (controller/actioncatalog/descriptions.json) from the actions
// themselves, or with -check fails when the committed file differs from a
// fresh generation. It is a build tool (make catalog, make catalog-check):
// it links every first-party action, which the controller must not.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/plugins/catalog"
)

func main() {
	out := flag.String("o", "controller/actioncatalog/"+actioncatalog.DescriptionsFile, "the file to write, or to compare with -check")
	check := flag.Bool("check", false, "compare the file with a fresh generation instead of writing it; exit 1 when they differ")
	flag.Parse()
	if err := run(*out, *check); err != nil {
		fmt.Fprintln(os.Stderr, "catalog:", err)
		os.Exit(1)
	}
}

func run(path string, check bool) error {
	descs, err := catalog.Descriptions(context.Background())
	if err != nil {
		return fmt.Errorf("describing the first-party actions: %w", err)
	}
	fresh, err := actioncatalog.EncodeDescriptions(descs)
	if err != nil {
		return err
	}
	if check {
		committed, err := os.ReadFile(path) //nolint:gosec // the committed descriptions file, named by the Makefile
		if err != nil {
			return err
		}
		if !bytes.Equal(committed, fresh) {
			return fmt.Errorf("%s differs from the actions' own descriptions: run 'make catalog' and commit", path)
		}
		fmt.Printf("catalog: %s up to date (%d actions)\n", path, len(descs))
		return nil
	}
	if err := os.WriteFile(path, fresh, 0o644); err != nil { //nolint:gosec // a source file of the repository, readable like the others
		return err
	}
	fmt.Printf("catalog: wrote %s (%d actions)\n", path, len(descs))
	return nil
}
