package capvend_test

import (
	"context"
	"net/http"
	"os"

	capvend "capvend.dev/client"
)

func runAgent(string) {}

// The orchestrator of clients/go/README.md, compiled with the tests.
func ExampleOrchestrator() {
	_ = func(ctx context.Context) error {
		orch, err := capvend.NewOrchestrator(capvend.OrchestratorOptions{
			Endpoints: []string{"capvend-a:8080", "capvend-b:8080"}, Credential: os.Getenv("CAPVEND_ORCHESTRATOR_TOKEN"),
		})
		if err != nil {
			return err
		}
		defer orch.Close()
		s, err := orch.StartSession(ctx, capvend.SessionRequest{AgentID: "sales-bot", UserID: "alice",
			Grants: []capvend.Grant{{Resource: "crm", Scopes: []string{"read", "write"}}}})
		if err != nil {
			return err
		}
		runAgent(s.Credential) // hand the credential to the runtime
		_, err = orch.EndSession(ctx, s.ID, "task done")
		return err
	}
}

// The service of clients/go/README.md, compiled with the tests.
func ExampleCredentialManager_RoundTripper() {
	_ = func(ctx context.Context, credential string) error {
		m, err := capvend.New(ctx, capvend.Options{
			Endpoints: []string{"capvend-a:8080", "capvend-b:8080"}, SessionCredential: credential,
			Grants: []capvend.Grant{{Resource: "crm", Scopes: []string{"read", "write"}}},
		})
		if err != nil {
			return err
		}
		defer m.Close()
		crm := &http.Client{Transport: m.RoundTripper("crm", nil)} // sends the current crm token
		resp, err := crm.Get("https://crm.example/api/contacts")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return nil
	}
}
