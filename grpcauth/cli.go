package grpcauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"time"
)

// DefaultCLICommand is the command a CLISource runs by default.
var DefaultCLICommand = []string{"yc", "iam", "create-token"}

// DefaultCLILifetime is the lifetime a CLISource assumes when the caller
// gives no expiry: an hour is short enough for any token the CLI prints,
// including a federated user's, whose session may end sooner than 12 h.
const DefaultCLILifetime = time.Hour

// CLIOptions configure a CLISource.
type CLIOptions struct {
	// Command is the program and its arguments. Optional. Default:
	// DefaultCLICommand. It runs without a shell.
	Command []string
	// Timeout bounds one run, within the caller's context. Optional.
	// Default: 1 minute (a federated sign-in may wait for a browser).
	Timeout time.Duration
	// Expiry returns when the printed token stops being valid, e.g. the
	// federation session cookie's expiry. Optional. It is called after each
	// run; a zero time means unknown, and the token is given
	// DefaultCLILifetime.
	Expiry func() time.Time
}

// CLISource runs a command that prints an IAM token on its standard output,
// such as the CLI after a (federated) sign-in. Safe for concurrent use.
type CLISource struct {
	command []string
	timeout time.Duration
	expiry  func() time.Time
}

const cliSourceName = "CLI"

// Output bounds: a token is at most MaxTokenSize bytes plus a newline; the
// standard error is only for the error message.
const maxCLIStderr = 4 << 10

// NewCLISource returns a source that runs opts.Command. It does not run it
// yet.
func NewCLISource(opts *CLIOptions) (*CLISource, error) {
	s := &CLISource{command: DefaultCLICommand, timeout: time.Minute}
	if opts != nil {
		if len(opts.Command) > 0 {
			s.command = append([]string(nil), opts.Command...)
		}
		if opts.Timeout > 0 {
			s.timeout = opts.Timeout
		}
		s.expiry = opts.Expiry
	}
	if s.command[0] == "" {
		return nil, configError(cliSourceName, errors.New("command is empty"))
	}
	return s, nil
}

// Token runs the command and returns the token it printed. A timeout is
// temporary; a command that is missing, fails or prints no valid token is
// not.
func (s *CLISource) Token(ctx context.Context) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	name := s.command[0]
	cmd := exec.CommandContext(ctx, name, s.command[1:]...)
	stdout := &limitedBuffer{limit: MaxTokenSize + 2}
	stderr := &limitedBuffer{limit: maxCLIStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child that leaves a grandchild holding its pipes must not hang Token.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	// What the command printed may be the token: keep it out of errors.
	secret := strings.TrimSpace(stdout.String())
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, &FetchError{Source: cliSourceName, Temporary: true,
			Err: fmt.Errorf("%q did not finish: %w%s", name, ctx.Err(), stderrText(stderr, secret))}
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return nil, configError(cliSourceName, fmt.Errorf("command %q not found", name))
	default:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, &FetchError{Source: cliSourceName,
				Err: fmt.Errorf("%q exited with status %d%s", name, ee.ExitCode(), stderrText(stderr, secret))}
		}
		return nil, configError(cliSourceName, fmt.Errorf("run %q: %w", name, err))
	}
	now := sourceNow()
	if stdout.overflow {
		return nil, &FetchError{Source: cliSourceName, Err: fmt.Errorf("%q printed more than %d bytes", name, stdout.limit)}
	}
	if strings.ContainsAny(secret, "\r\n") {
		return nil, &FetchError{Source: cliSourceName, Err: fmt.Errorf("%q printed more than one line", name)}
	}
	if err := checkTokenValue(secret); err != nil {
		return nil, &FetchError{Source: cliSourceName, Err: fmt.Errorf("%q printed a token that %w", name, err)}
	}
	exp := now.Add(DefaultCLILifetime)
	if s.expiry != nil {
		if e := s.expiry(); !e.IsZero() {
			exp = e
		}
	}
	tok, err := tokenExpiringAt(secret, exp, now)
	if err != nil {
		return nil, &FetchError{Source: cliSourceName, Err: fmt.Errorf("%w: sign in again", err)}
	}
	return tok, nil
}

// stderrText is the command's standard error for an error message: bounded,
// one line, without the token.
func stderrText(b *limitedBuffer, secret string) string {
	text := strings.TrimSpace(sanitize(b.String()))
	if text == "" {
		return ""
	}
	return ": " + truncate(redact(text, secret), 512)
}

// limitedBuffer keeps the first limit bytes written to it and discards the
// rest, so that a chatty command can neither block nor grow memory.
type limitedBuffer struct {
	buf      bytes.Buffer
	limit    int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.overflow = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) String() string { return b.buf.String() }
