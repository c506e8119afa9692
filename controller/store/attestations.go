package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// attestationMigrations make the table of attested enrollments: one row per
// agent that enrolled by proving its AWS identity, with a unique instance id
// for those that proved it with an instance identity document.
var attestationMigrations = []migration{
	{name: "attest-001-agent-attestations", sql: `CREATE TABLE agent_attestations (
		agent_id TEXT PRIMARY KEY, method TEXT NOT NULL, subject TEXT NOT NULL,
		instance_id TEXT UNIQUE, account TEXT NOT NULL, region TEXT NOT NULL, attested_at BIGINT NOT NULL)`},
}

// Attestation methods.
const (
	AttestAWSIID = "aws-iid"
	AttestAWSSTS = "aws-sts"
	AttestToken  = "token"
)

// Attestation is how an agent proved its identity when it enrolled.
type Attestation struct {
	AgentID string
	// Method is AttestAWSIID or AttestAWSSTS.
	Method string
	// Subject is the instance id (aws-iid) or the caller's ARN (aws-sts).
	Subject string
	// InstanceID is set for aws-iid; one instance has one agent.
	InstanceID string
	Account    string
	Region     string
	At         time.Time
}

// InstanceEnrolledError refuses a second enrollment of one instance.
type InstanceEnrolledError struct {
	InstanceID string
	AgentID    string
	// Revoked says the agent holding the instance has been revoked (it
	// must be forgotten before the instance enrols again).
	Revoked bool
}

func (e *InstanceEnrolledError) Error() string {
	if e.Revoked {
		return fmt.Sprintf("instance %s belongs to revoked agent %s; forget that agent before the instance enrols again", e.InstanceID, e.AgentID)
	}
	return fmt.Sprintf("instance %s is already enrolled as agent %s", e.InstanceID, e.AgentID)
}

// Attestations store attested enrollments.
type Attestations interface {
	// EnrollAttested stores a new agent and its attestation in one
	// transaction. For aws-iid it refuses, with *InstanceEnrolledError,
	// an instance that another agent still holds; a claim whose agent has
	// been forgotten (its row deleted) is given up.
	EnrollAttested(ctx context.Context, a *Agent, att *Attestation) error
	// ListAttestations returns every attestation by agent id.
	ListAttestations(ctx context.Context) (map[string]*Attestation, error)
}

// EnrollAttested implements Attestations.
func (s *SQL) EnrollAttested(ctx context.Context, a *Agent, att *Attestation) error {
	if att.AgentID != a.ID {
		return errors.New("store: the attestation is for another agent")
	}
	facts, err := protojson.Marshal(orEmpty(a.Facts))
	if err != nil {
		return err
	}
	plugins, err := marshalPlugins(a.Plugins)
	if err != nil {
		return err
	}
	tokenLabels, _ := json.Marshal(a.TokenLabels)
	var instance any
	if att.InstanceID != "" {
		instance = att.InstanceID
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if att.InstanceID != "" {
			var holder string
			err := tx.QueryRowContext(ctx, `SELECT agent_id FROM agent_attestations WHERE instance_id = ?`, att.InstanceID).Scan(&holder)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			default:
				var revoked int
				err := tx.QueryRowContext(ctx, `SELECT revoked FROM agents WHERE id = ?`, holder).Scan(&revoked)
				switch {
				case errors.Is(err, sql.ErrNoRows):
					// The holder was forgotten: its claim goes with it.
					if _, err := tx.ExecContext(ctx, `DELETE FROM agent_attestations WHERE agent_id = ?`, holder); err != nil {
						return err
					}
				case err != nil:
					return err
				default:
					return &InstanceEnrolledError{InstanceID: att.InstanceID, AgentID: holder, Revoked: revoked != 0}
				}
			}
		}
		if err := putAgentTx(ctx, tx, a, string(facts), plugins, string(tokenLabels)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO agent_attestations (agent_id, method, subject, instance_id, account, region, attested_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, att.AgentID, att.Method, att.Subject, instance, att.Account, att.Region, ns(att.At))
		return err
	})
}

// ListAttestations implements Attestations.
func (s *SQL) ListAttestations(ctx context.Context) (map[string]*Attestation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT agent_id, method, subject, instance_id, account, region, attested_at FROM agent_attestations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*Attestation{}
	for rows.Next() {
		var a Attestation
		var instance sql.NullString
		var at int64
		if err := rows.Scan(&a.AgentID, &a.Method, &a.Subject, &instance, &a.Account, &a.Region, &at); err != nil {
			return nil, err
		}
		a.InstanceID, a.At = instance.String, tm(at)
		out[a.AgentID] = &a
	}
	return out, rows.Err()
}
