import { cors } from "../_shared/cors.ts";

Deno.serve(async (req) => {
  if (req.method === "OPTIONS") return new Response("ok", { headers: cors });
  const { amount, description } = await req.json();
  return Response.json({ status: "submitted", amount, description }, { headers: cors });
});
