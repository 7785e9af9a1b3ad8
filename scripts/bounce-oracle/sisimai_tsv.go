// Prints what sisimai (the library whose answers label tests/corpora/bounces) decides for
// each mail given on the command line, one recipient per line:
//
//	file  index  recipient  reason  hard_bounce  status  reply_code  command  diagnostic_type  diagnostic
//
// Built by run.sh in GOPATH mode against a local copy of sisimai's library source.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sisimai "libsisimai.org/sisimai"
)

func main() {
	args := sisimai.Args()
	args.Delivered = true
	args.Vacation = true
	clean := strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")
	for _, path := range os.Args[1:] {
		func() {
			// sisimai panics on a few malformed variants: skip that file, keep going.
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "sisimai failed on %s: %v\n", filepath.Base(path), r)
				}
			}()
			facts, _ := sisimai.Rise(path, args)
			for i, f := range *facts {
				fmt.Printf("%s\t%d\t%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n",
					filepath.Base(path), i+1, f.Recipient.Address, f.Reason, f.HardBounce,
					f.DeliveryStatus, f.ReplyCode, f.Command, f.DiagnosticType, clean.Replace(f.DiagnosticCode))
			}
		}()
	}
}
