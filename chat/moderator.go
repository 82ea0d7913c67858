package chat

import (
	"context"
	"errors"
	"time"
)

// ErrModeratorCheckUnavailable is what CheckModerator returns (wrapped) when
// the revocation list cannot be read right now: try again, do not refuse for good.
var ErrModeratorCheckUnavailable = errors.New("moderator status cannot be checked right now")

// CheckModerator verifies token as a moderator token of channel the way
// joining chat does: signature, expiry and revocation. It returns nil for a
// good token; an error wrapping ErrModeratorCheckUnavailable when revocation
// cannot be checked; any other error when the token is no good.
func (s *Server) CheckModerator(channel, token string) error {
	switch _, code, msg := s.checkModerator(channel, token); code {
	case "":
		return nil
	case codeUnavailable:
		return ErrModeratorCheckUnavailable
	default:
		return errors.New(msg)
	}
}

// checkModerator verifies a moderator token for channel: signature, expiry and revocation.
// It returns the token, or the error code and message to send: codeBadToken for a token
// that is no good, codeUnavailable when the revocation list cannot be read right now.
func (s *Server) checkModerator(channel, token string) (ModeratorToken, string, string) {
	t, err := verifyModeratorToken(s.opts.Secret, channel, token, time.Now())
	if err != nil {
		return t, codeBadToken, "invalid moderator token: " + err.Error()
	}
	if code, msg := s.checkRevoked(t); code != "" {
		return t, code, msg
	}
	return t, "", ""
}

// checkRevoked asks the revocation list about t.
func (s *Server) checkRevoked(t ModeratorToken) (string, string) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	revoked, err := s.revoked.Revoked(ctx, t.ID)
	switch {
	case err != nil:
		s.log.Warn("chat: cannot check moderator token revocation", "token_id", t.ID, "err", err)
		return codeUnavailable, "moderator status cannot be checked right now; try again"
	case revoked:
		return codeBadToken, "moderator token revoked"
	}
	return "", ""
}

// stillModerator re-checks the token of a moderator connection before an action: a token
// that expired or was revoked since the join no longer moderates. It demotes the
// connection and answers the client when not.
func (c *Client) stillModerator(ref string) bool {
	if !c.mod.Load() {
		c.fail(codeForbidden, "moderators only", ref, 0)
		return false
	}
	if !time.Now().Before(c.modTok.Expires) {
		c.demote("moderator token expired", ref)
		return false
	}
	switch code, msg := c.s.checkRevoked(c.modTok); code {
	case "":
		return true
	case codeBadToken:
		c.demote(msg, ref)
	default:
		c.fail(code, msg, ref, time.Second)
	}
	return false
}

// demote makes a moderator connection an ordinary one and tells the client why.
func (c *Client) demote(why, ref string) {
	c.mod.Store(false)
	c.modTok = ModeratorToken{}
	c.s.log.Info("chat: moderator demoted", "room", c.room.name, "user", c.id, "why", why)
	c.fail(codeBadToken, why, ref, 0)
}
