// Package bench compares iamtoken-go side by side with the libraries people
// would otherwise use, in one run. It is a module of its own so that the
// comparison libraries never enter the library's go.mod.
//
//	cd bench && go test -run '^$' -bench . -benchmem
package bench
